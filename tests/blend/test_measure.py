"""Tests of the one measurement: exact per-example means and standard errors."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_gblend.blend import compiled_losses, measure
from tests.helpers import synthetic_setup

HEADS = ("a", "b", "fused")


def _expected(model, pair):
    """Per-head per-example cross-entropy computed in numpy from predictions."""
    probs = model.predict(pair[0], verbose=0)
    rows = np.arange(len(pair[1]))
    return np.array([-np.log(probs[h][rows, pair[1]]) for h in HEADS])


def test_per_example_losses_and_standard_errors_match_numpy():
    model, _, heldout = synthetic_setup()
    expected = _expected(model, heldout)
    np.testing.assert_allclose(
        measure.per_example_losses(model, heldout), expected, rtol=1e-4, atol=1e-6
    )
    stats = measure.head_loss_stats(model, heldout)
    n = len(heldout[1])
    assert stats.count == n
    np.testing.assert_allclose(stats.mean, expected.mean(axis=1), rtol=1e-4)
    np.testing.assert_allclose(
        stats.sem, expected.std(axis=1, ddof=1) / math.sqrt(n), rtol=1e-3
    )


@pytest.mark.parametrize("batch", [1, 5, 64])
def test_dataset_and_arrays_give_the_same_exact_mean(batch):
    model, _, heldout = synthetic_setup()
    from_arrays = measure.head_loss_stats(model, heldout, batch_size=7)
    dataset = tf.data.Dataset.from_tensor_slices(heldout).batch(batch)
    from_dataset = measure.head_loss_stats(model, dataset)
    # Unequal last batches are weighted by their size: the same per-example mean.
    np.testing.assert_allclose(from_dataset.mean, from_arrays.mean, rtol=1e-5)
    np.testing.assert_allclose(from_dataset.sem, from_arrays.sem, rtol=1e-4)


def test_head_submodel_with_its_loss_measures_its_head():
    model, _, heldout = synthetic_setup()
    sub = model.head_model("b")
    prepared = compiled_losses.prepare(heldout, model=sub)
    assert sorted(prepared.inputs.element_spec) == ["b"]  # Extra key "a" dropped.
    stats = measure.head_loss_stats(
        sub, prepared, loss="sparse_categorical_crossentropy"
    )
    whole = measure.head_loss_stats(model, heldout)
    np.testing.assert_allclose(stats.mean, whole.mean[1:2], rtol=1e-5)


def test_measuring_touches_no_metric_and_no_weight():
    model, train, heldout = synthetic_setup()
    model.fit(*train, epochs=1, verbose=0)
    tracked = [float(v.numpy()) for m in model.metrics for v in m.variables]
    weights = model.get_weights()
    measure.head_loss_stats(model, heldout)
    assert [float(v.numpy()) for m in model.metrics for v in m.variables] == tracked
    for a, b in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_one_hot_labels_give_the_sparse_losses():
    model, _, heldout = synthetic_setup()
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    one_hot = (heldout[0], keras.utils.to_categorical(heldout[1], 4))
    sparse = _expected(model, heldout).mean(axis=1)
    np.testing.assert_allclose(
        measure.head_loss_stats(model, one_hot).mean, sparse, rtol=1e-4
    )


def test_uncompiled_model_is_refused():
    model, _, heldout = synthetic_setup()
    sub = model.head_model("a")
    with pytest.raises(ValueError, match="compiled with a loss per output"):
        measure.head_loss_stats(sub, compiled_losses.prepare(heldout, model=sub))


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda x, y: (x, y + 4), r"class indices in \[0, 4\)\. Received values"),
        (lambda x, y: ({"a": x["a"]}, y), r"Missing \['b'\]"),
        (
            lambda x, y: tf.data.Dataset.from_tensor_slices((x, y)),
            r"unbatched dataset",
        ),
        (  # One-hot labels are rank 1 per element: the inputs tell.
            lambda x, y: tf.data.Dataset.from_tensor_slices(
                (x, keras.utils.to_categorical(y, 4))
            ),
            r"unbatched dataset: 'a' elements have shape \(2,\)",
        ),
        (lambda x, y: (x, y.astype(str)), "dtype <U"),
    ],
)
def test_prepare_checks_the_data_against_the_model(make, match):
    model, _, heldout = synthetic_setup()
    with pytest.raises(ValueError, match=match):
        compiled_losses.prepare(make(*heldout), model=model, name="heldout")


def test_in_situ_measurer_measures_the_model_itself_once():
    model, train, heldout = synthetic_setup()
    measurer = measure.InSituMeasurer(train, heldout, batch_size=7)
    measurer.setup(model)
    (taken,) = measurer.measurements(model, 4)
    assert taken.epoch == 4 and measure.InSituMeasurer.recorded
    np.testing.assert_allclose(
        taken.heldout, _expected(model, heldout).mean(axis=1), rtol=1e-4
    )
    np.testing.assert_allclose(
        taken.train, _expected(model, train).mean(axis=1), rtol=1e-4
    )


def test_in_situ_measurer_checks_its_sets_when_built_and_v_at_setup():
    model, train, heldout = synthetic_setup()
    with pytest.raises(ValueError, match="every one of its"):
        measure.InSituMeasurer(train, train)
    x, y = heldout
    measurer = measure.InSituMeasurer(train, (x, np.full_like(y, 1)))
    with pytest.raises(ValueError, match="at least 2 classes"):
        measurer.setup(model)
