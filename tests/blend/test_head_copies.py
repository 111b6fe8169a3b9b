"""Tests of offline / exact estimation: copies built once, reset, independent."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_gblend import build_gblend_model, data
from keras_gblend.blend import formula, measure
from keras_gblend.blend.head_copies import HeadCopies, copy_model, estimate_offline
from keras_gblend.model import encoders
from tests.helpers import synthetic_setup


def _setup():
    return synthetic_setup(num_train=80)


def _copies(model, train_data, train, heldout, **kwargs):
    copies = HeadCopies(train_data, train, heldout, **kwargs)
    copies.setup(model)
    return copies


def test_copy_shares_nothing():
    model, _, _ = _setup()
    twin = copy_model(model)
    for variable in twin.weights:
        assert all(variable is not v for v in model.weights)
    for a, b in zip(model.get_weights(), twin.get_weights()):
        np.testing.assert_array_equal(a, b)
    twin.weights[0].assign(twin.weights[0] + 1.0)
    assert not np.array_equal(model.get_weights()[0], twin.get_weights()[0])


def test_copies_leave_the_main_model_and_its_optimizer_untouched():
    model, train, heldout = _setup()
    model.fit(*train, epochs=1, verbose=0)
    weights = model.get_weights()
    iterations = int(model.optimizer.iterations.numpy())
    before, after = _copies(model, train, train, heldout, epochs=2).run(model, epoch=1)
    for a, b in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert int(model.optimizer.iterations.numpy()) == iterations
    # The copies did train: every head's training loss fell.
    assert (np.array(after.train) < np.array(before.train)).all()
    assert (before.epoch, after.epoch) == (1, 3)
    assert all(s > 0 for s in after.heldout_sem)


def test_copies_are_reset_from_the_checkpoint_at_every_run():
    model, train, heldout = _setup()
    copies = _copies(model, train, train, heldout, epochs=1)
    subs = dict(copies._subs)
    first = copies.run(model, epoch=0, seed=3)
    functions = {h: s.train_function for h, s in subs.items()}
    second = copies.run(model, epoch=0, seed=3)
    # Same checkpoint, same seed, optimizer state zeroed: the same result ...
    np.testing.assert_allclose(second[1].heldout, first[1].heldout, rtol=1e-5)
    # ... from the same copies and traced functions (nothing rebuilt).
    assert copies._subs == subs
    assert all(s.train_function is functions[h] for h, s in subs.items())
    # The optimizer restarted: its step count is one run's, not two runs'.
    steps = int(np.ceil(len(train[1]) / copies.batch_size))
    assert int(subs["a"].optimizer.iterations.numpy()) == steps


def test_copies_start_from_the_current_weights():
    model, train, heldout = _setup()
    copies = _copies(model, train, train, heldout, epochs=1)
    model.fit(*train, epochs=3, verbose=0)  # The checkpoint moves on.
    before, _ = copies.run(model, epoch=3)
    now = measure.head_loss_stats(model, heldout).mean
    np.testing.assert_allclose(before.heldout, now, rtol=1e-5)


def test_copies_train_on_a_dataset():
    model, train, heldout = _setup()
    dataset = tf.data.Dataset.from_tensor_slices(train).batch(16)
    before, after = _copies(model, dataset, train, heldout, epochs=2).run(
        model, epoch=0
    )
    assert (np.array(after.train) < np.array(before.train)).all()


def _crossentropy(sub, pair):
    """Mean loss of a single-output model, computed here from its predictions."""
    x, y = pair
    probs = sub.predict({k: x[k] for k in sub.input}, verbose=0)
    return float(np.mean(-np.log(probs[np.arange(len(y)), y].astype(np.float64))))


def test_estimate_offline_is_the_formula_on_copies_trained_in_the_test():
    # Each head's sub-model is copied, trained and measured here, without
    # HeadCopies or measure: the offline estimate must be `blend_weights` of the
    # deltas of these losses. No dropout and a dataset read in order make the
    # two trainings the same.
    ds = data.make_synthetic(num_train=80, num_test=8, dim_b=16, seed=0)
    train, heldout = data.holdout_split(ds.train, heldout_fraction=0.25, seed=0)
    branches = {
        m: encoders.mlp_encoder(x.shape[1:], units=(8,), dropout=0.0, name=f"{m}_e")
        for m, x in train[0].items()
    }
    model = build_gblend_model(branches, num_classes=ds.num_classes, dropout=0.0)
    sgd = dict(learning_rate=0.05, momentum=0.9)
    model.compile(keras.optimizers.SGD(**sgd), loss="sparse_categorical_crossentropy")
    batches = tf.data.Dataset.from_tensor_slices(train).batch(16)
    estimate = estimate_offline(model, batches, train, heldout, epochs=2)
    losses = []  # Per head: T' and V before, T' and V after.
    for head in model.head_names:
        sub = copy_model(model).head_model(head)
        before = [_crossentropy(sub, train), _crossentropy(sub, heldout)]
        sub.compile(keras.optimizers.SGD(**sgd), loss="sparse_categorical_crossentropy")
        keys = list(sub.input)
        own = batches.map(lambda x, y, keys=keys: ({k: x[k] for k in keys}, y))
        sub.fit(own, epochs=2, shuffle=False, verbose=0)
        losses.append(before + [_crossentropy(sub, train), _crossentropy(sub, heldout)])
    t0, v0, t1, v1 = np.array(losses).T
    d_g, d_o = v0 - v1, (v1 - t1) - (v0 - t0)
    expected = formula.blend_weights(d_g, d_o)
    assert expected.status == "ok" and not np.allclose(expected.weights, 1 / 3)
    np.testing.assert_allclose(estimate.d_g, d_g, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(estimate.d_o, d_o, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(estimate.weights, expected.weights, rtol=1e-4, atol=1e-6)


def test_measurements_are_the_run_as_a_list_never_recorded():
    model, train, heldout = _setup()
    copies = _copies(model, train, train, heldout, epochs=2)
    taken = copies.measurements(model, 3)
    assert [m.epoch for m in taken] == [3, 5] and not HeadCopies.recorded


def test_bad_epochs():
    model, train, heldout = _setup()
    with pytest.raises(ValueError, match="`epochs` must be an int >= 1. Received 0"):
        HeadCopies(train, train, heldout, epochs=0)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_copies_train_under_a_mixed_precision_policy(policy):
    # Under mixed_float16 `compile` wraps the optimizer in a LossScaleOptimizer,
    # which takes no `learning_rate` argument of its own.
    keras.mixed_precision.set_global_policy(policy)
    try:
        model, train, heldout = _setup()
        copies = _copies(model, train, train, heldout, epochs=2, batch_size=8)
        runs = [copies.run(model, epoch=0, seed=3) for _ in range(2)]
        estimate = estimate_offline(model, train, train, heldout, epochs=1)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    # Every copy trained at both runs: at the second, the loss scale had been
    # reset to its initial value, not zeroed (a zero scale trains nothing).
    for before, after in runs:
        assert (np.array(after.train) < np.array(before.train)).all()
    for sub in copies._subs.values():
        assert float(getattr(sub.optimizer, "dynamic_scale", 1.0)) > 0
    np.testing.assert_allclose(estimate.weights.sum(), 1.0, rtol=1e-6)


def test_loss_scale_optimizer_is_rebuilt_with_its_settings():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model, train, heldout = _setup()
        sub = _copies(model, train, train, heldout, epochs=1)._subs["a"]
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert isinstance(sub.optimizer, keras.optimizers.LossScaleOptimizer)
    assert isinstance(sub.optimizer.inner_optimizer, keras.optimizers.SGD)
    assert sub.optimizer.inner_optimizer is not model.optimizer.inner_optimizer
    assert float(sub.optimizer.dynamic_scale.numpy()) == 32768.0
    np.testing.assert_allclose(float(sub.optimizer.learning_rate), 0.05, rtol=1e-6)


def test_estimate_offline_on_an_uncompiled_model():
    model, train, heldout = _setup()
    uncompiled = copy_model(model)
    with pytest.raises(ValueError, match="`model` must be compiled with a loss"):
        estimate_offline(uncompiled, train, train, heldout, epochs=1)
