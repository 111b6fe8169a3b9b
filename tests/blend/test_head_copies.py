"""Tests of offline / exact estimation: copies built once, reset, independent."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_gblend.blend import estimators, measure
from keras_gblend.blend.head_copies import HeadCopies, copy_model, estimate_offline
from tests.helpers import synthetic_setup


def _setup():
    return synthetic_setup(num_train=80)


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
    before, after = HeadCopies(model, train, train, heldout, epochs=2).run(
        model, epoch=1
    )
    for a, b in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert int(model.optimizer.iterations.numpy()) == iterations
    # The copies did train: every head's training loss fell.
    assert (np.array(after.train) < np.array(before.train)).all()
    assert (before.epoch, after.epoch) == (1, 3)
    assert all(s > 0 for s in after.heldout_sem)


def test_copies_are_reset_from_the_checkpoint_at_every_run():
    model, train, heldout = _setup()
    copies = HeadCopies(model, train, train, heldout, epochs=1)
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
    copies = HeadCopies(model, train, train, heldout, epochs=1)
    model.fit(*train, epochs=3, verbose=0)  # The checkpoint moves on.
    before, _ = copies.run(model, epoch=3)
    now = measure.head_loss_stats(model, heldout).mean
    np.testing.assert_allclose(before.heldout, now, rtol=1e-5)


def test_copies_train_on_a_dataset():
    model, train, heldout = _setup()
    dataset = tf.data.Dataset.from_tensor_slices(train).batch(16)
    before, after = HeadCopies(model, dataset, train, heldout, epochs=2).run(
        model, epoch=0
    )
    assert (np.array(after.train) < np.array(before.train)).all()


def test_estimate_offline_is_the_estimator_on_the_copies_measurements():
    model, train, heldout = _setup()
    estimate = estimate_offline(
        model, train, train, heldout, epochs=2, min_weight=0.05, seed=7
    )
    pair = HeadCopies(model, train, train, heldout, epochs=2).run(
        model, epoch=0, seed=7
    )
    expected = estimators.paper(
        list(pair), min_weight=0.05, overfit_floor=1e-3, fallback=None
    )
    np.testing.assert_allclose(estimate.weights, expected.weights, rtol=1e-5)
    np.testing.assert_allclose(estimate.d_g, expected.d_g, rtol=1e-5)
    assert estimate.weights.min() >= 0.05 - 1e-12


def test_bad_epochs():
    model, train, heldout = _setup()
    with pytest.raises(ValueError, match="`epochs` must be an int >= 1. Received 0"):
        HeadCopies(model, train, train, heldout, epochs=0)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_copies_train_under_a_mixed_precision_policy(policy):
    # Under mixed_float16 `compile` wraps the optimizer in a LossScaleOptimizer,
    # which takes no `learning_rate` argument of its own.
    keras.mixed_precision.set_global_policy(policy)
    try:
        model, train, heldout = _setup()
        copies = HeadCopies(model, train, train, heldout, epochs=2, batch_size=8)
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
        sub = HeadCopies(model, train, train, heldout, epochs=1)._subs["a"]
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
