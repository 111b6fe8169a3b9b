"""Mixed precision and XLA (`jit_compile=True`) with G-Blend, on CPU (issue 19).

Under `mixed_bfloat16` / `mixed_float16` the layers compute in 16 bits and keep
float32 variables; the loss-weight variables must stay float32, the callback's
measurement and estimate must give finite weights that sum to 1, an assigned
weight must take effect in the traced (or XLA-compiled) train step without a
re-trace, and the SavedModel export must serve float32 probabilities.
About 3 min on 2 CPU cores (XLA compiles dominate).
"""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_gblend import GBlendCallback, build_gblend_model, head_losses
from keras_gblend.blend.head_copies import estimate_offline
from keras_gblend.tf import export

CONFIGS = [
    ("mixed_bfloat16", False),
    ("mixed_bfloat16", True),
    ("mixed_float16", False),
]
IDS = [f"{policy}-{'xla' if jit else 'graph'}" for policy, jit in CONFIGS]


@pytest.fixture
def policy(request):
    """Sets the global dtype policy for one test and restores float32 after it."""
    keras.backend.clear_session()
    keras.mixed_precision.set_global_policy(request.param)
    yield request.param
    keras.mixed_precision.set_global_policy("float32")
    keras.backend.clear_session()


def _data(num=96, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=num).astype("int32")
    x = {
        "a": (rng.normal(size=(num, 5)) + y[:, None]).astype("float32"),
        "b": (rng.normal(size=(num, 4)) - y[:, None]).astype("float32"),
    }

    def rows(start, stop):
        return {m: v[start:stop] for m, v in x.items()}, y[start:stop]

    return rows(0, 64), rows(0, 32), rows(64, num)  # train, T', V


def _model(jit_compile):
    keras.utils.set_random_seed(0)
    branches = {
        name: keras.Sequential(
            [keras.Input((size,)), keras.layers.Dense(6, activation="relu")],
            name=f"{name}_encoder",
        )
        for name, size in (("a", 5), ("b", 4))
    }
    model = build_gblend_model(branches, num_classes=3)
    model.compile(
        optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
        loss="sparse_categorical_crossentropy",
        jit_compile=jit_compile,
    )
    return model


def _check_estimates(estimates, num_heads=3):
    assert estimates
    for estimate in estimates:
        weights = np.asarray(estimate.weights, dtype=np.float64)
        assert weights.shape == (num_heads,)
        assert np.all(np.isfinite(weights)) and np.all(weights >= 0)
        assert math.isclose(weights.sum(), 1.0, abs_tol=1e-6)


@pytest.mark.parametrize("policy, jit", CONFIGS, ids=IDS, indirect=["policy"])
def test_in_situ_gblend_trains_and_estimates(policy, jit):
    train, subset, heldout = _data()
    model = _model(jit)
    assert model.dtype_policy.name == policy
    callback = GBlendCallback(subset, heldout, warmup_epochs=0, super_epoch=1)
    history = model.fit(
        *train, epochs=3, batch_size=16, callbacks=[callback], verbose=0
    )
    _check_estimates(callback.estimates)
    assert [e.epoch for e in callback.estimates] == [1, 2, 3]
    # mixed_float16's dynamic loss scale skips the first ~10 steps (scaled
    # losses overflow float16 from 2**15 down to 2**5), so its first estimates
    # may see no change; the last one must be a real estimate.
    assert callback.estimates[-1].status == "ok"
    for variable in model.blend_weights.values():
        assert variable.dtype == "float32"
        assert not variable.trainable
    assert model.get_blend_weights() != model.initial_blend_weights  # assigned
    losses = np.asarray(head_losses(model, heldout))
    assert losses.dtype in (np.float32, np.float64)
    assert losses.shape == (3,) and np.all(np.isfinite(losses))
    for key in ("loss", "a_loss", "b_loss", "fused_loss", "gblend_weight_a"):
        assert all(math.isfinite(v) for v in history.history[key]), key


@pytest.mark.parametrize(
    "policy, jit",
    [("float32", True), ("mixed_bfloat16", True)],
    ids=["float32-xla", "mixed_bfloat16-xla"],
    indirect=["policy"],
)
def test_assigned_weights_act_in_the_compiled_step_without_retrace(policy, jit):
    train, _, _ = _data()
    model = _model(jit)
    model.fit(*train, epochs=1, batch_size=16, verbose=0)  # traced / compiled here
    train_function = model.train_function
    model.set_blend_weights({"a": 1.0, "b": 0.0, "fused": 0.0})
    before = {
        name: [w.numpy().copy() for w in model.get_layer(name).weights]
        for name in ("a_encoder", "b_encoder")
    }
    # Momentum carries the first epoch's updates on: reset the optimizer's
    # slots so that only this epoch's gradients move the weights.
    for variable in model.optimizer.variables:
        if "momentum" in variable.path:
            variable.assign(tf.zeros_like(variable))
    history = model.fit(*train, epochs=1, batch_size=16, verbose=0)
    assert model.train_function is train_function  # no re-trace
    after = {n: [w.numpy() for w in model.get_layer(n).weights] for n in before}
    for old, new in zip(before["b_encoder"], after["b_encoder"]):
        np.testing.assert_array_equal(new, old)  # weight 0: no gradient
    assert any(
        not np.array_equal(old, new)
        for old, new in zip(before["a_encoder"], after["a_encoder"])
    )
    # The blended loss is the "a" head's loss alone.
    np.testing.assert_allclose(
        history.history["loss"], history.history["a_loss"], rtol=1e-2
    )


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"], indirect=True)
def test_offline_estimate_under_mixed_precision(policy):
    train, subset, heldout = _data()
    estimate = estimate_offline(
        _model(False), train, subset, heldout, epochs=2, batch_size=16
    )
    _check_estimates([estimate])
    assert np.all(np.isfinite(estimate.d_g)) and np.all(np.isfinite(estimate.d_o))


@pytest.mark.parametrize("policy", ["mixed_bfloat16"], indirect=True)
def test_exact_mode_under_bfloat16_and_xla(policy):
    train, subset, heldout = _data()
    model = _model(True)
    callback = GBlendCallback(
        subset,
        heldout,
        warmup_epochs=0,
        super_epoch=1,
        mode="exact",
        train_data=train,
        verbose=0,
    )
    model.fit(*train, epochs=2, batch_size=16, callbacks=[callback], verbose=0)
    _check_estimates(callback.estimates)
    assert any(np.any(np.asarray(e.d_g) != 0) for e in callback.estimates)


@pytest.mark.parametrize(
    "policy, jit",
    [("mixed_bfloat16", True)],
    ids=["xla"],
    indirect=["policy"],
)
def test_export_serves_float32_under_bfloat16(policy, jit, tmp_path):
    train, subset, heldout = _data()
    model = _model(jit)
    model.fit(*train, epochs=1, batch_size=16, verbose=0)
    export.export_saved_model(model, str(tmp_path / "served"))
    served = tf.saved_model.load(str(tmp_path / "served"))
    x = {m: v[:4] for m, v in heldout[0].items()}
    out = served.signatures["serving_default"](
        **{m: tf.constant(v) for m, v in x.items()}
    )["probabilities"]
    assert out.dtype == tf.float32 and out.shape == (4, 3)
    expected = np.asarray(model.predict_output(x), dtype=np.float32)
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-2)  # bfloat16 ulp
    np.testing.assert_allclose(out.numpy().sum(-1), 1.0, atol=1e-2)


@pytest.mark.parametrize("policy", ["mixed_bfloat16"], indirect=True)
def test_head_probabilities_are_float32_under_mixed_precision(policy):
    _, _, heldout = _data()
    model = _model(False)
    outputs = model.predict(heldout[0], verbose=0)
    assert {name: str(v.dtype) for name, v in outputs.items()} == {
        "a": "float32",
        "b": "float32",
        "fused": "float32",
    }
