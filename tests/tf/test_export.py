"""Tests for keras_gblend.tf.export and `.keras` round trips of the training model."""

import json
import os
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_gblend import GBlendModel, build_gblend_model
from keras_gblend.model import prediction
from keras_gblend.tf import export
from tests.helpers import run_command, run_python
from tests.scripts import runner

SAVED_MODEL_CLI = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
BLEND = {"audio": 0.15, "image": 0.05, "text": 0.1, "fused": 0.7}


def _data(num=40, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=num).astype("int32")
    x = {
        "audio": (rng.normal(size=(num, 5)) + y[:, None]).astype("float32"),
        "image": rng.integers(0, 256, size=(num, 4, 3)).astype("uint8"),
        "text": (rng.normal(size=(num, 2)) - y[:, None]).astype("float32"),
    }
    return x, y


def _trained_model(dropout=0.25):
    keras.utils.set_random_seed(0)
    branches = {
        "audio": keras.Sequential(
            [keras.Input((5,)), keras.layers.Dense(6, activation="relu")],
            name="audio_encoder",
        ),
        "image": keras.Sequential(
            [
                keras.Input((4, 3), dtype="uint8"),
                keras.layers.Rescaling(1 / 255.0),
                keras.layers.Flatten(),
                keras.layers.Dense(6, activation="relu"),
            ],
            name="image_encoder",
        ),
        "text": keras.Sequential(
            [keras.Input((2,)), keras.layers.Dense(4, activation="relu")],
            name="text_encoder",
        ),
    }
    model = build_gblend_model(branches, num_classes=3, dropout=dropout)
    model.compile(
        optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    x, y = _data()
    model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    model.set_blend_weights(BLEND)
    return model


SIGNATURES = {
    "serving_default": ("audio", "image", "text"),
    "fused": ("audio", "image", "text"),
    "mean": ("audio", "image", "text"),
    "weighted": ("audio", "image", "text"),
    "only_audio": ("audio",),
    "only_image": ("image",),
    "only_text": ("text",),
    "only_audio_and_image": ("audio", "image"),
    "only_audio_and_text": ("audio", "text"),
    "only_image_and_text": ("image", "text"),
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A trained model (mode "weighted", fit on V), its SavedModel, 17 inputs."""
    keras.backend.clear_session()
    model = _trained_model()
    model.fit_output_weights(_data(30, seed=2))
    model.set_output_mode("weighted")
    directory = tmp_path_factory.mktemp("export")
    path = export.export_saved_model(model, directory / "served")
    x, _ = _data(17, seed=1)
    np.savez(directory / "inputs.npz", **x)
    for name, value in x.items():
        np.save(directory / f"{name}.npy", value)
    expected = {}
    for name, modalities in SIGNATURES.items():
        mode = name if name in prediction.MODES else None
        subset = {m: x[m] for m in modalities}
        expected[name] = model.predict_output(subset, mode=mode, batch_size=17)
    return {"model": model, "path": path, "dir": directory, "expected": expected}


def test_signatures_cover_every_mode_and_every_subset(exported):
    names = export.signature_names(exported["model"])
    assert {k: v[0] for k, v in names.items()} == SIGNATURES
    assert names["serving_default"][1] == "weighted"
    assert names["only_audio_and_image"][1] == "weighted"


def test_saved_model_variables_exclude_blend_weights(exported):
    checkpoint = os.path.join(exported["path"], "variables", "variables")
    shapes = sorted(
        tuple(shape)
        for key, shape in tf.train.list_variables(checkpoint)
        if key.startswith("_all_variables/")
    )
    model = exported["model"]
    layers = [w for w in model.weights if "blend_weight" not in w.path]
    assert shapes == sorted(tuple(w.shape) for w in layers)
    # 3 encoders + 3 modality heads + the fused head (kernel + bias each), and
    # the 4 blend weights of the model left out.
    assert len(shapes) == 14 and len(model.weights) == 18


def test_reload_in_fresh_process_matches_keras_for_every_signature(exported):
    result = runner.run_json(
        [
            runner.script_path("serve_saved_model.py"),
            "--dir",
            exported["path"],
            "--inputs",
            exported["dir"] / "inputs.npz",
            "--batch-sizes",
            "1",
            "3",
            "17",
        ],
        timeout=180,
    )
    assert sorted(result["signatures"]) == sorted(SIGNATURES)
    assert not any("blend_weight" in v for v in result["variables"])
    dtypes = {"audio": "float32", "image": "uint8", "text": "float32"}
    shapes = {"audio": [None, 5], "image": [None, 4, 3], "text": [None, 2]}
    for name, modalities in SIGNATURES.items():
        served = result["signatures"][name]
        assert served["inputs"] == {
            m: {"shape": shapes[m], "dtype": dtypes[m]} for m in modalities
        }
        assert served["outputs"] == {
            "probabilities": {"shape": [None, 3], "dtype": "float32"}
        }
        for size in (1, 3, 17):
            probs = np.array(served["results"][str(size)]["probabilities"])
            assert probs.shape == (size, 3)
            np.testing.assert_allclose(
                probs, exported["expected"][name][:size], atol=1e-5, err_msg=name
            )
    # The signatures really differ: the modes and the subsets are not copies.
    full = result["signatures"]
    assert not np.allclose(
        full["fused"]["results"]["17"]["probabilities"],
        full["mean"]["results"]["17"]["probabilities"],
    )


def _cli(*args):
    return run_command([SAVED_MODEL_CLI, *args], timeout=120).stdout


def test_saved_model_cli_show(exported):
    out = _cli("show", "--dir", exported["path"], "--all")
    for name in SIGNATURES:
        assert f"signature_def['{name}']:" in out
    assert out.count("signature_def[") == len(SIGNATURES) + 1  # + the init op
    only_image = out.split("signature_def['only_image']:")[1].split("signature_def[")[0]
    for line in (
        "inputs['image'] tensor_info:",
        "dtype: DT_UINT8",
        "shape: (-1, 4, 3)",
        "outputs['probabilities'] tensor_info:",
        "shape: (-1, 3)",
        "Method name is: tensorflow/serving/predict",
    ):
        assert line in only_image, (line, only_image)
    assert "inputs['audio']" not in only_image


@pytest.mark.parametrize("signature", ["serving_default", "only_image_and_text"])
def test_saved_model_cli_run(exported, signature):
    directory = exported["dir"]
    out_dir = directory / f"cli_{signature}"
    modalities = SIGNATURES[signature]
    inputs = ";".join(f"{m}={directory / (m + '.npy')}" for m in modalities)
    out = _cli(
        "run",
        "--dir",
        exported["path"],
        "--tag_set",
        "serve",
        "--signature_def",
        signature,
        "--inputs",
        inputs,
        "--outdir",
        out_dir,
        "--overwrite",
    )
    assert "Result for output key probabilities:" in out
    served = np.load(out_dir / "probabilities.npy")
    np.testing.assert_allclose(served, exported["expected"][signature], atol=1e-5)


def test_export_rejects_other_models(tmp_path):
    plain = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="must be a GBlendModel. Received Sequential"):
        export.export_saved_model(plain, tmp_path / "x")
    with pytest.raises(ValueError, match="Received str"):
        export.export_saved_model("model.keras", tmp_path / "x")


def test_export_to_unwritable_path(tmp_path):
    model = _trained_model(dropout=0.0)
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(OSError, match="Cannot create the export directory"):
        export.export_saved_model(model, blocker / "served")


def test_keras_round_trip_keeps_current_blend_weights_and_trains(tmp_path):
    model = _trained_model()
    x, y = _data()
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, GBlendModel)
    # The CURRENT weights come back, not the initial (uniform) ones.
    assert loaded.get_blend_weights() == pytest.approx(BLEND, abs=1e-7)
    assert loaded.initial_blend_weights == model.initial_blend_weights
    np.testing.assert_allclose(
        loaded.predict(x, verbose=0)["fused"],
        model.predict(x, verbose=0)["fused"],
        atol=1e-6,
    )
    # Compiled from the saved config, with the blend weights as loss weights.
    # (batch_size divides the 40 examples: Keras 3.15 averages the per-head
    # losses over batches unweighted, so a smaller last batch would skew them.)
    results = loaded.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)
    weighted = sum(BLEND[h] * results[f"{h}_loss"] for h in loaded.head_names)
    assert results["loss"] == pytest.approx(weighted, rel=1e-5)
    history = loaded.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert loaded.get_blend_weights() == pytest.approx(BLEND, abs=1e-7)
    # And it can be compiled again (e.g. a new optimizer) and trained.
    loaded.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    loaded.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    assert loaded.get_blend_weights() == pytest.approx(BLEND, abs=1e-7)


@pytest.mark.parametrize("mode", ["weighted", "mean"])
def test_keras_round_trip_keeps_output_mode_and_combination_weights(tmp_path, mode):
    model = _trained_model()
    fitted = model.fit_output_weights(_data(30, seed=2))
    model.set_output_mode(mode)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.output_mode == mode
    assert loaded.output_weights == pytest.approx(fitted, abs=1e-12)
    x, _ = _data(9, seed=3)
    np.testing.assert_allclose(
        loaded.predict_output(x), model.predict_output(x), atol=1e-6
    )
    # The default mode of the reloaded model is the saved one, not "fused".
    assert not np.allclose(loaded.predict_output(x), loaded.predict(x)["fused"])


LOAD_IN_A_FRESH_PROCESS = """
import json
import sys

import keras

try:
    keras.saving.load_model(sys.argv[1])
except TypeError as error:
    print("without the import:", str(error).split(" Make sure")[0])
import keras_gblend  # noqa: E402,F401

model = keras.saving.load_model(sys.argv[1])
print("with the import:", type(model).__name__, json.dumps(model.get_blend_weights()))
"""


@pytest.mark.slow  # Over 20 s on 2 cores.
def test_a_keras_file_loads_in_a_fresh_process_after_import_keras_gblend(tmp_path):
    model = _trained_model()
    path = tmp_path / "model.keras"
    model.save(path)
    stdout = run_python("-c", LOAD_IN_A_FRESH_PROCESS, path, timeout=120).stdout
    lines = stdout.splitlines()
    # Keras alone cannot find the class; after `import keras_gblend` it loads.
    assert lines[0] == "without the import: Could not locate class 'GBlendModel'."
    name, weights = lines[1].split(": ", 1)[1].split(" ", 1)
    assert name == "GBlendModel"
    assert json.loads(weights) == pytest.approx(BLEND, abs=1e-7)
    # docs/inference.md tells the user so.
    with open(os.path.join(runner.REPO_ROOT, "docs", "inference.md")) as handle:
        saving = handle.read().split("## Saving and loading the model", 1)[1]
    assert "`import keras_gblend` before `keras.saving.load_model`" in saving
