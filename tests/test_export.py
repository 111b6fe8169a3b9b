"""Tests for keras_gblend.export and `.keras` round trips of the training model."""

import os
import subprocess

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_gblend import GBlendModel, build_gblend_model, export
from tests.scripts import runner

SAVED_MODEL_CLI = os.path.join(
    os.path.dirname(runner.sys.executable), "saved_model_cli"
)
BLEND = {"audio": 0.15, "image": 0.05, "fused": 0.8}


def _data(num=40, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=num).astype("int32")
    x = {
        "audio": (rng.normal(size=(num, 5)) + y[:, None]).astype("float32"),
        "image": rng.integers(0, 256, size=(num, 4, 3)).astype("uint8"),
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


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A trained model, its fused-only SavedModel, and inputs for 17 examples."""
    keras.backend.clear_session()
    model = _trained_model()
    directory = tmp_path_factory.mktemp("export")
    path = export.export_fused(model, directory / "served")
    x, _ = _data(17, seed=1)
    np.savez(directory / "inputs.npz", **x)
    for name, value in x.items():
        np.save(directory / f"{name}.npy", value)
    expected = model.predict(x, batch_size=17, verbose=0)["fused"]
    return {
        "model": model,
        "path": path,
        "dir": directory,
        "x": x,
        "expected": expected,
    }


def test_fused_model_holds_only_the_fused_path(exported):
    fused = export.fused_model(exported["model"])
    names = {v.path for v in fused.weights}
    assert any(n.startswith("fused_head") for n in names)
    assert not any("audio_head" in n or "image_head" in n for n in names)
    assert not any("blend_weight" in n for n in names)


def test_saved_model_variables_exclude_aux_heads_and_blend_weights(exported):
    checkpoint = os.path.join(exported["path"], "variables", "variables")
    shapes = sorted(
        tuple(shape)
        for key, shape in tf.train.list_variables(checkpoint)
        if key.startswith("_all_variables/")
    )
    fused = export.fused_model(exported["model"])
    assert shapes == sorted(tuple(w.shape) for w in fused.weights)
    # 2 encoders (kernel + bias) + the fused head; the full model has 13.
    assert len(shapes) == 6 and len(exported["model"].weights) == 13


def test_reload_in_fresh_process_matches_keras_at_several_batch_sizes(exported):
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
        timeout=120,
    )
    assert result["signatures"] == ["serving_default"]
    assert result["inputs"] == {
        "audio": {"shape": [None, 5], "dtype": "float32"},
        "image": {"shape": [None, 4, 3], "dtype": "uint8"},
    }
    assert result["outputs"] == {"fused": {"shape": [None, 3], "dtype": "float32"}}
    # Besides the weights of the fused path, only the fused dropout layer's seed
    # state (unused at serving time, dropout is off).
    weights = [v for v in result["variables"] if "seed_generator" not in v]
    assert len(result["variables"]) - len(weights) == 1
    assert weights == [
        "audio_encoder/dense/bias:0",
        "audio_encoder/dense/kernel:0",
        "fused_head/bias:0",
        "fused_head/kernel:0",
        "image_encoder/dense_1/bias:0",
        "image_encoder/dense_1/kernel:0",
    ]
    for size in (1, 3, 17):
        served = np.array(result["results"][str(size)]["fused"])
        assert served.shape == (size, 3)
        # Same ops, same CPU: equal to float32 rounding (dropout is off).
        np.testing.assert_allclose(served, exported["expected"][:size], atol=1e-6)


def _cli(*args):
    completed = subprocess.run(
        [SAVED_MODEL_CLI, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env=runner.subprocess_env(),
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout


def test_saved_model_cli_show(exported):
    out = _cli("show", "--dir", exported["path"], "--all")
    assert "signature_def['serving_default']:" in out
    assert out.count("signature_def[") == 2  # serving_default + the init op
    serving = out.split("signature_def['serving_default']:")[1]
    for line in (
        "inputs['audio'] tensor_info:",
        "inputs['image'] tensor_info:",
        "dtype: DT_UINT8",
        "shape: (-1, 4, 3)",
        "shape: (-1, 5)",
        "outputs['fused'] tensor_info:",
        "shape: (-1, 3)",
        "Method name is: tensorflow/serving/predict",
    ):
        assert line in serving, (line, serving)
    assert "outputs['audio']" not in out and "outputs['image']" not in out


def test_saved_model_cli_run(exported):
    directory = exported["dir"]
    out_dir = directory / "cli_out"
    inputs = f"audio={directory / 'audio.npy'};image={directory / 'image.npy'}"
    out = _cli(
        "run",
        "--dir",
        exported["path"],
        "--tag_set",
        "serve",
        "--signature_def",
        "serving_default",
        "--inputs",
        inputs,
        "--outdir",
        out_dir,
        "--overwrite",
    )
    assert "Result for output key fused:" in out
    served = np.load(out_dir / "fused.npy")
    np.testing.assert_allclose(served, exported["expected"], atol=1e-6)


def test_export_rejects_models_without_fused_head(tmp_path):
    plain = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="must be a GBlendModel with a 'fused' output"):
        export.export_fused(plain, tmp_path / "x")
    with pytest.raises(ValueError, match="Received str"):
        export.export_fused("model.keras", tmp_path / "x")


def test_export_to_unwritable_path(tmp_path):
    model = _trained_model(dropout=0.0)
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(OSError, match="Cannot create the export directory"):
        export.export_fused(model, blocker / "served")


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
