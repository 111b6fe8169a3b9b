"""Tests of offline / exact estimation: copies are independent, results valid."""

import numpy as np
import pytest

from keras_gblend.estimation import (
    copy_model,
    estimate_offline,
    head_submodel,
    measure_heads_by_training,
)
from tests.helpers import synthetic_setup


def _setup():
    return synthetic_setup(num_train=80)


def test_head_submodel_uses_only_its_modality():
    model, train, _ = _setup()
    sub = head_submodel(model, "a")
    assert list(sub.input) == ["a"]
    fused = head_submodel(model, "fused")
    assert sorted(fused.input) == ["a", "b"]
    np.testing.assert_allclose(
        sub.predict({"a": train[0]["a"]}, verbose=0),
        model.predict(train[0], verbose=0)["a"],
        rtol=1e-6,
    )
    with pytest.raises(
        ValueError, match=r"`head` must be one of \['a', 'b', 'fused'\]"
    ):
        head_submodel(model, "c")


def test_copy_shares_nothing():
    model, _, _ = _setup()
    twin = copy_model(model)
    original = {v.path: v for v in model.weights}
    for variable in twin.weights:
        assert all(variable is not v for v in original.values())
    for a, b in zip(model.get_weights(), twin.get_weights()):
        np.testing.assert_array_equal(a, b)
    twin.weights[0].assign(twin.weights[0] + 1.0)
    assert not np.array_equal(model.get_weights()[0], twin.get_weights()[0])


def test_measuring_by_training_leaves_main_model_and_optimizer_untouched():
    model, train, heldout = _setup()
    model.fit(*train, epochs=1, verbose=0)
    weights = model.get_weights()
    iterations = int(model.optimizer.iterations.numpy())
    losses = measure_heads_by_training(model, train, train, heldout, epochs=2)
    for a, b in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert int(model.optimizer.iterations.numpy()) == iterations
    # The copies did train: their training loss fell.
    assert (losses["train_after"] < losses["train_before"]).all()
    assert set(losses) == {
        "train_before",
        "heldout_before",
        "train_after",
        "heldout_after",
    }


def test_estimate_offline_gives_valid_weights():
    model, train, heldout = _setup()
    estimate = estimate_offline(model, train, train, heldout, epochs=3, min_weight=0.05)
    assert estimate.weights.shape == (3,)
    assert estimate.weights.sum() == pytest.approx(1.0)
    assert (estimate.weights >= 0.05 - 1e-12).all()


def test_bad_epochs():
    model, train, heldout = _setup()
    with pytest.raises(ValueError, match="`epochs` must be an int >= 1. Received 0"):
        measure_heads_by_training(model, train, train, heldout, epochs=0)
