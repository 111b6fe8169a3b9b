"""Tests of GBlendModel: the loss-weight mechanism, bad input, save and load."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_gblend import FUSED, GBlendModel, build_gblend_model
from tests.conftest import REPO_ROOT


def _branches(dims=(4, 4), units=3):
    return {
        f"m{i}": keras.Sequential(
            [keras.Input((d,)), keras.layers.Dense(units, name=f"m{i}_dense")],
            name=f"m{i}_encoder",
        )
        for i, d in enumerate(dims)
    }


def _data(n=16, dims=(4, 4), seed=0):
    rng = np.random.default_rng(seed)
    x = {f"m{i}": rng.normal(size=(n, d)).astype("float32") for i, d in enumerate(dims)}
    return x, rng.integers(0, 2, n).astype("int32")


def _model(lr=0.1, **kwargs):
    model = build_gblend_model(_branches(), num_classes=2, **kwargs)
    model.compile(
        optimizer=keras.optimizers.SGD(lr),  # no momentum: zero grad -> no update
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def _kernel(model, layer):
    return keras.ops.convert_to_numpy(model.get_layer(layer).kernel).copy()


def _encoder_kernel(model, modality):
    encoder = model.get_layer(f"{modality}_encoder")
    return keras.ops.convert_to_numpy(encoder.layers[-1].kernel).copy()


class SetWeightsAt(keras.callbacks.Callback):
    """Assigns blend weights at the start of given epochs, as GBlendCallback does."""

    def __init__(self, schedule):
        super().__init__()
        self.schedule = schedule
        self.snapshots = []

    def on_epoch_begin(self, epoch, logs=None):
        if epoch in self.schedule:
            self.model.set_blend_weights(self.schedule[epoch])
        self.snapshots.append(
            {
                "m0_head": _kernel(self.model, "m0_head"),
                "m0_encoder": _encoder_kernel(self.model, "m0"),
                "m1_head": _kernel(self.model, "m1_head"),
            }
        )

    def on_train_end(self, logs=None):
        self.on_epoch_begin(-1)


def test_zero_weight_freezes_head_but_branch_learns_and_no_retrace():
    model = _model()
    x, y = _data()
    off = {"m0": 0.0, "m1": 0.5, FUSED: 0.5}
    on = {"m0": 0.5, "m1": 0.25, FUSED: 0.25}
    callback = SetWeightsAt({0: off, 1: on, 2: off})
    traces = []
    compute_loss = model.compute_loss

    def counting_compute_loss(*args, **kwargs):
        traces.append(1)  # Python code in a tf.function runs only when tracing.
        return compute_loss(*args, **kwargs)

    model.compute_loss = counting_compute_loss
    traces_after_first_epoch = []
    count = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: (
            epoch == 0 and traces_after_first_epoch.append(len(traces))
        )
    )
    model.fit(
        x,
        y,
        epochs=3,
        batch_size=8,
        shuffle=False,
        callbacks=[callback, count],
        verbose=0,
    )
    start, after_off, after_on = (
        callback.snapshots[0],
        callback.snapshots[1],
        callback.snapshots[2],
    )
    # Epoch 0, m0 weight 0: its head gets exactly zero gradient...
    np.testing.assert_array_equal(after_off["m0_head"], start["m0_head"])
    # ...while its branch still learns through the fused head, and m1 learns.
    assert np.abs(after_off["m0_encoder"] - start["m0_encoder"]).max() > 1e-6
    assert np.abs(after_off["m1_head"] - start["m1_head"]).max() > 1e-6
    # Epoch 1, weight restored: the head learns again.
    assert np.abs(after_on["m0_head"] - after_off["m0_head"]).max() > 1e-6
    # Epoch 2, weight 0 again: frozen again.
    np.testing.assert_array_equal(callback.snapshots[3]["m0_head"], after_on["m0_head"])
    # The new weights took effect without re-tracing the train function: no
    # trace happened after the first epoch although the weights changed twice.
    assert traces_after_first_epoch == [len(traces)]


def test_gradients_are_zero_exactly_for_zero_weighted_head():
    model = _model()
    x, y = _data(n=8)
    model.set_blend_weights({"m0": 0.0, "m1": 0.5, FUSED: 0.5})
    with tf.GradientTape() as tape:
        y_pred = model(x, training=True)
        loss = model.compute_loss(x, y, y_pred, training=True)
    grads = dict(
        zip(
            [v.path for v in model.trainable_variables],
            tape.gradient(loss, model.trainable_variables),
        )
    )
    head = [g for p, g in grads.items() if p.startswith("m0_head/")]
    branch = [g for p, g in grads.items() if p.startswith("m0_encoder/")]
    assert head and branch
    for g in head:
        np.testing.assert_array_equal(g.numpy(), 0.0)
    assert max(float(tf.reduce_max(tf.abs(g))) for g in branch) > 0


def test_loss_is_weighted_sum_of_head_losses():
    model = _model()
    x, y = _data()
    weights = {"m0": 0.2, "m1": 0.7, FUSED: 0.1}
    model.set_blend_weights(weights)
    result = model.evaluate(x, y, batch_size=16, return_dict=True, verbose=0)
    expected = sum(w * result[f"{h}_loss"] for h, w in weights.items())
    assert result["loss"] == pytest.approx(expected, rel=1e-5)
    # Per-head losses are logged unweighted.
    probs = model.predict(x, verbose=0)
    m0_loss = -np.mean(np.log(probs["m0"][np.arange(16), y]))
    assert result["m0_loss"] == pytest.approx(m0_loss, rel=1e-4)


def test_initial_weights_default_uniform_and_configurable():
    assert _model().get_blend_weights() == pytest.approx(
        {"m0": 1 / 3, "m1": 1 / 3, FUSED: 1 / 3}
    )
    model = _model(initial_blend_weights=[0, 0, 1])
    assert model.get_blend_weights() == {"m0": 0.0, "m1": 0.0, FUSED: 1.0}


def test_outputs_keyed_by_modality_and_fused():
    model = _model()
    out = model.predict(_data(n=5)[0], verbose=0)
    assert sorted(out) == ["fused", "m0", "m1"]
    for probs in out.values():
        assert probs.shape == (5, 2)
        np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("num_modalities", [2, 3, 5])
def test_any_number_of_modalities_trains(num_modalities):
    dims = tuple(range(2, 2 + num_modalities))
    model = build_gblend_model(_branches(dims), num_classes=3)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    x, _ = _data(n=12, dims=dims)
    history = model.fit(x, np.arange(12) % 3, epochs=1, verbose=0)
    assert len(model.head_names) == num_modalities + 1
    assert np.isfinite(history.history["loss"][0])


def test_conv_and_rnn_branches():
    image = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(2, 3),
            keras.layers.GlobalAveragePooling2D(),
        ],
        name="image_encoder",
    )
    audio = keras.Sequential(
        [keras.Input((5, 3)), keras.layers.GRU(4)], name="audio_encoder"
    )
    model = build_gblend_model(
        {"image": image, "audio": audio}, num_classes=2, dropout=0.0
    )
    model.compile(
        optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy"
    )
    rng = np.random.default_rng(0)
    x = {
        "image": rng.normal(size=(8, 8, 8, 1)).astype("float32"),
        "audio": rng.normal(size=(8, 5, 3)).astype("float32"),
    }
    y = np.arange(8) % 2
    conv, gru = image.trainable_weights[0], audio.trainable_weights[0]
    before = [keras.ops.convert_to_numpy(w).copy() for w in (conv, gru)]
    history = model.fit(x, y, batch_size=8, epochs=3, verbose=0)
    # Both kinds of branch are trained through the heads, and the loss falls.
    for weight, start in zip((conv, gru), before):
        assert not np.allclose(keras.ops.convert_to_numpy(weight), start)
    assert history.history["loss"][-1] < history.history["loss"][0]
    probs = model.predict(x, verbose=0)
    assert probs["image"].shape == probs["audio"].shape == probs[FUSED].shape == (8, 2)


def test_one_hot_labels_give_the_sparse_label_loss():
    # One-hot labels with categorical cross-entropy must give exactly the loss of
    # the class indices with the sparse loss on the same model and data.
    x, y = _data()
    losses = {}
    for loss, labels in (
        ("sparse_categorical_crossentropy", y),
        ("categorical_crossentropy", keras.utils.to_categorical(y, 2)),
    ):
        keras.utils.set_random_seed(3)
        model = build_gblend_model(_branches(), num_classes=2)
        model.compile(optimizer="sgd", loss=loss)
        losses[loss] = model.evaluate(
            x, labels, batch_size=len(y), return_dict=True, verbose=0
        )
    sparse, one_hot = losses.values()
    for key in ("loss", "m0_loss", "m1_loss", "fused_loss"):
        assert one_hot[key] == pytest.approx(sparse[key], rel=1e-6)
    assert sparse["m0_loss"] != pytest.approx(sparse["m1_loss"])


def test_keras_round_trip_keeps_weights_and_blend_weights(tmp_path):
    model = _model()
    x, y = _data()
    model.fit(x, y, epochs=1, verbose=0)
    model.set_blend_weights({"m0": 0.1, "m1": 0.2, FUSED: 0.7})
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, GBlendModel)
    assert loaded.modalities == ("m0", "m1")
    assert loaded.get_blend_weights() == pytest.approx(
        {"m0": 0.1, "m1": 0.2, FUSED: 0.7}
    )
    expected, got = model.predict(x, verbose=0), loaded.predict(x, verbose=0)
    for head in model.head_names:
        np.testing.assert_allclose(got[head], expected[head], rtol=1e-6)
    # It is compiled with the blend weights as live loss weights.
    result = loaded.evaluate(x, y, batch_size=16, return_dict=True, verbose=0)
    expected_loss = (
        0.1 * result["m0_loss"] + 0.2 * result["m1_loss"] + 0.7 * result["fused_loss"]
    )
    assert result["loss"] == pytest.approx(expected_loss, rel=1e-5)
    loaded.fit(x, y, epochs=1, verbose=0)


# --- Bad input -------------------------------------------------------------------


def test_fewer_than_two_modalities():
    with pytest.raises(ValueError, match="at least two modalities. Received 1"):
        build_gblend_model({"m0": _branches()["m0"]}, num_classes=2)


def test_modality_named_like_fused_head():
    branches = _branches()
    with pytest.raises(ValueError, match="cannot be named 'fused'"):
        build_gblend_model({"m0": branches["m0"], "fused": branches["m1"]}, 2)


def test_invalid_modality_name():
    branches = _branches()
    with pytest.raises(ValueError, match="valid identifiers.*'my audio'"):
        build_gblend_model({"m0": branches["m0"], "my audio": branches["m1"]}, 2)


def test_branch_with_wrong_output_rank():
    bad = keras.Sequential([keras.Input((4, 3)), keras.layers.Dense(2)], name="bad")
    with pytest.raises(ValueError, match=r"rank-2 feature tensor.*\(None, 4, 2\)"):
        build_gblend_model({"m0": _branches()["m0"], "m1": bad}, num_classes=2)


def test_branch_that_is_not_a_model():
    with pytest.raises(ValueError, match="must be a Keras model. Received Dense"):
        build_gblend_model(
            {"m0": _branches()["m0"], "m1": keras.layers.Dense(2)}, num_classes=2
        )


def test_bad_num_classes():
    with pytest.raises(
        ValueError, match="`num_classes` must be an int >= 2. Received 1"
    ):
        build_gblend_model(_branches(), num_classes=1)


def test_missing_modality_key():
    model = _model()
    x, y = _data()
    del x["m1"]
    # Keras's own data adapter or the model names the missing key.
    with pytest.raises(ValueError, match=r"Missing.*m1"):
        model.predict(x, verbose=0)


def test_extra_same_shaped_key_is_never_fed_to_a_branch():
    model = _model()
    x, y = _data()
    # "a_extra" sorts before "m0": a positional match would feed it to branch m0.
    x_extra = {"a_extra": np.zeros_like(x["m0"]), **x}
    with pytest.raises(ValueError, match=r"unexpected: \['a_extra'\]"):
        model.fit(x_extra, y, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"unexpected: \['a_extra'\]"):
        model.predict(x_extra, verbose=0)


@pytest.mark.parametrize("shape", [(16, 3), (16, 2, 1), (16, 1, 1, 1)])
def test_labels_of_wrong_shape(shape):
    model = _model()
    x, _ = _data()
    tail = ", ".join(str(d) for d in shape[1:])
    with pytest.raises(ValueError, match=rf"Labels must have shape.*, {tail}\)\."):
        model.fit(x, np.zeros(shape, "int32"), epochs=1, verbose=0)


def test_compile_rejects_loss_weights_and_wrong_loss_keys():
    model = build_gblend_model(_branches(), num_classes=2)
    with pytest.raises(ValueError, match="`loss_weights` is managed by GBlendModel"):
        model.compile(loss="sparse_categorical_crossentropy", loss_weights=[1, 1, 1])
    with pytest.raises(ValueError, match=r"`loss` dict must have the keys"):
        model.compile(loss={"m0": "sparse_categorical_crossentropy"})
    with pytest.raises(ValueError, match="`loss` is required"):
        model.compile(optimizer="sgd")


@pytest.mark.parametrize(
    ("weights", "match"),
    [
        ({"m0": 1.0, "m1": 0.0}, r"exactly the keys \['m0', 'm1', 'fused'\]"),
        ([0.5, 0.5], "Expected 3 blend weights"),
        ([0.5, -0.1, 0.6], "finite and >= 0"),
        ([0.5, np.nan, 0.5], "finite and >= 0"),
        ([0, 0, 0], r"must not all be 0.*Received \[0.0, 0.0, 0.0\]"),
    ],
)
def test_set_blend_weights_validates(weights, match):
    model = _model()
    with pytest.raises(ValueError, match=match):
        model.set_blend_weights(weights)
    assert model.get_blend_weights() == pytest.approx(
        {"m0": 1 / 3, "m1": 1 / 3, FUSED: 1 / 3}
    )  # Unchanged.


def test_mean_head_loss_is_the_unweighted_mean_whatever_the_weights():
    # Issue 20, item 1: `loss` changes scale with the blend weights;
    # `mean_head_loss` is the mean of the unweighted head losses and does not.
    model = _model()
    x, y = _data()
    results = []
    for weights in ([0.2, 0.7, 0.1], [3.0, 0.0, 0.0]):
        model.set_blend_weights(weights)
        results.append(model.evaluate(x, y, batch_size=16, return_dict=True, verbose=0))
    heads = [np.mean([r[f"{h}_loss"] for h in model.head_names]) for r in results]
    first, second = results
    assert first["mean_head_loss"] == pytest.approx(heads[0], rel=1e-6)
    assert second["mean_head_loss"] == pytest.approx(first["mean_head_loss"], rel=1e-6)
    assert second["loss"] == pytest.approx(3 * first["m0_loss"], rel=1e-5)
    assert second["loss"] != pytest.approx(first["loss"], rel=1e-2)
    # It is a metric of the model (so callbacks infer its direction), logged by
    # fit with its `val_` twin.
    history = model.fit(x, y, epochs=2, validation_data=(x, y), verbose=0)
    for prefix in ("", "val_"):
        expected = np.mean(
            [history.history[f"{prefix}{h}_loss"] for h in model.head_names], axis=0
        )
        np.testing.assert_allclose(
            history.history[f"{prefix}mean_head_loss"], expected, rtol=1e-6
        )


@pytest.mark.parametrize("kind", [list, tuple])
def test_list_or_tuple_inputs_are_refused_naming_the_modalities(kind):
    model = _model()
    x, y = _data()
    sequence = kind([x["m0"], x["m1"]])
    match = (
        rf"Inputs must be a dict keyed by modality, with exactly the keys "
        rf"\['m0', 'm1'\].*Received a {kind.__name__} of 2 values"
    )
    with pytest.raises(ValueError, match=match):
        model.fit(sequence, y, epochs=1, verbose=0)
    assert int(model.optimizer.iterations.numpy()) == 0  # Before any step.
    with pytest.raises(ValueError, match=match):
        model.evaluate(sequence, y, verbose=0)
    with pytest.raises(ValueError, match=match):
        model.predict(sequence, verbose=0)


# Builds and fits a model with `keras_gblend/__init__.py` left out (it imports
# every layer), then lists the package's modules that got imported.
_MODEL_LAYER_ONLY = """
import json, sys, types
import numpy as np
package = types.ModuleType("keras_gblend")
package.__path__ = ["keras_gblend"]
sys.modules["keras_gblend"] = package
from keras_gblend.model import builder, encoders
branches = {m: encoders.mlp_encoder((2,), units=(2,), name=m + "_e") for m in "ab"}
model = builder.build_gblend_model(branches, num_classes=2)
model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
x = {m: np.zeros((4, 2), "float32") for m in "ab"}
model.fit(x, np.zeros(4, "int32"), epochs=1, verbose=0)
print(json.dumps(sorted(m for m in sys.modules if m.startswith("keras_gblend."))))
"""


def test_the_model_and_its_fit_import_no_higher_layer():
    # Issue 18, item 3: `fit` once imported the training layer lazily.
    out = subprocess.run(
        [sys.executable, "-c", _MODEL_LAYER_ONLY],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    loaded = json.loads(out.strip().splitlines()[-1])
    assert "keras_gblend.model.fit_setup" in loaded  # `fit` ran its set-up.
    higher = [m for m in loaded if m.split(".")[1] in ("training", "report")]
    assert higher == []
