"""Tests of the measurement's fast path (`compiled_losses.LossFunction`, issue 19).

The measurers measure through one traced loss function per model over backend
tensors prepared once; it must give the numbers of the `model.predict` path and
trace once however many measurements a run takes.
"""

import keras
import numpy as np
import pytest

from keras_gblend.blend import compiled_losses, measure
from keras_gblend.blend.head_copies import HeadCopies
from tests.helpers import synthetic_setup

HEADS = ("a", "b", "fused")


def _numpy_losses(model, pair):
    """Per-head per-example cross-entropy from `model.predict`, in numpy."""
    probs = model.predict(pair[0], verbose=0)
    rows = np.arange(len(pair[1]))
    return np.array([-np.log(probs[h][rows, pair[1]]) for h in HEADS])


class CountingLoss(keras.losses.SparseCategoricalCrossentropy):
    """Counts how often its Python body runs: once per trace when compiled."""

    calls = 0

    def call(self, y_true, y_pred):
        CountingLoss.calls += 1
        return super().call(y_true, y_pred)


@pytest.mark.parametrize("batch_size", [7, 256])
def test_fast_path_gives_the_numbers_of_predict_and_numpy(batch_size):
    model, train, heldout = synthetic_setup()
    model.fit(*train, epochs=1, verbose=0)
    sets = {"train_subset": train, "heldout": heldout}
    prepared = measure.prepare_sets(model, sets, batch_size=batch_size)
    assert all(p.function is not None for p in prepared)
    for pair, data in zip(sets.values(), prepared):
        fast = measure.per_example_losses(model, data)
        assert fast.shape == (3, len(pair[1])) and fast.dtype == np.float64
        np.testing.assert_allclose(fast, _numpy_losses(model, pair), rtol=1e-5)
        slow = measure.per_example_losses(model, data._replace(function=None))
        np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-7)


def test_batches_have_one_shape_and_hold_every_example_once():
    model, _, heldout = synthetic_setup()
    data = compiled_losses.prepare(heldout, model=model, batch_size=7)
    n = len(heldout[1])
    assert sum(count for _, count in data.batches) == n
    shapes = {tuple(x["a"].shape) for (x, _), _ in data.batches}
    assert shapes == {(7, heldout[0]["a"].shape[1])}
    (x, y), count = data.batches[-1]  # Padded with its last real example.
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(y)[count:], heldout[1][-1])


def test_one_trace_for_every_measurement_of_a_run():
    model, train, heldout = synthetic_setup()
    model.compile(optimizer="sgd", loss={h: CountingLoss() for h in HEADS})
    measurer = measure.InSituMeasurer(train, heldout, batch_size=16)
    measurer.setup(model)  # T' (72 examples) and V (24) in batches of 16.
    CountingLoss.calls = 0
    first = measurer.measurements(model, 0)[0]
    in_first = CountingLoss.calls
    model.fit(*train, epochs=1, verbose=0)  # Its train step runs the loss too.
    CountingLoss.calls = 0
    second = measurer.measurements(model, 1)[0]
    batches = sum(len(d.batches) for d in measurer._data)
    if keras.backend.backend() == "torch":  # Eager: every head, every batch.
        assert in_first == CountingLoss.calls == 3 * batches
    else:  # Each head's loss runs once per trace: one trace for T' and V.
        assert (in_first, CountingLoss.calls) == (3, 0)
    assert not np.allclose(first.train, second.train)  # It saw the new weights.
    np.testing.assert_allclose(
        second.heldout, _numpy_losses(model, heldout).mean(axis=1), rtol=1e-5
    )


def test_exact_measurer_measures_its_copies_on_the_fast_path():
    model, train, heldout = synthetic_setup()
    copies = HeadCopies(train, train, heldout, epochs=1)
    copies.setup(model)
    assert all(d.function is not None for d in copies._data)
    assert copies._data[0].function.model is copies._twin
    before, _ = copies.run(model, epoch=0)
    np.testing.assert_allclose(
        before.heldout, _numpy_losses(model, heldout).mean(axis=1), rtol=1e-5
    )


def test_a_function_measures_only_its_own_model_and_losses():
    model, train, heldout = synthetic_setup()
    other, _, _ = synthetic_setup(seed=1)
    data = measure.prepare_sets(model, {"train_subset": train, "heldout": heldout})[1]
    assert data.function.measures(model, dict(model.loss))
    assert not data.function.measures(other, dict(other.loss))
    # Another model handed the same prepared data is predicted, not misread.
    np.testing.assert_allclose(
        measure.per_example_losses(other, data),
        _numpy_losses(other, heldout),
        rtol=1e-5,
    )


def test_distributed_or_uncompiled_models_use_predict():
    model, _, heldout = synthetic_setup()

    class Strategy:
        num_replicas_in_sync = 2

    class Mirrored:
        distribute_strategy = Strategy()
        head_names = HEADS
        loss = dict(model.loss)

    assert compiled_losses.LossFunction.supported(model)
    assert not compiled_losses.LossFunction.supported(Mirrored())
    assert not compiled_losses.LossFunction.supported(model.head_model("a"))  # No loss.
    sub = model.head_model("a")
    (data, _) = measure.prepare_sets(sub, {"train_subset": heldout, "heldout": heldout})
    with pytest.raises(ValueError, match="compiled with a loss per output"):
        measure.per_example_losses(sub, data)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_fast_path_matches_predict_under_a_mixed_precision_policy(policy):
    keras.mixed_precision.set_global_policy(policy)
    try:
        model, train, heldout = synthetic_setup()
        sets = {"train_subset": train, "heldout": heldout}
        fast = measure.prepare_sets(model, sets, batch_size=16)[1]
        np.testing.assert_allclose(
            measure.per_example_losses(model, fast),
            measure.per_example_losses(model, fast._replace(function=None)),
            rtol=1e-5,
            atol=1e-7,
        )
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.filterwarnings("ignore::keras_gblend.GBlendWarning")
@pytest.mark.parametrize("mode", ["in_situ", "exact"])
def test_output_choice_at_the_end_is_select_output_modes(monkeypatch, mode):
    from keras_gblend import GBlendCallback

    model, train, heldout = synthetic_setup()
    cb = GBlendCallback(
        train,
        heldout,
        warmup_epochs=1,
        super_epoch=1,
        mode=mode,
        train_data=train if mode == "exact" else None,
        verbose=0,
    )
    predicted = []
    original = type(model).predict
    monkeypatch.setattr(
        type(model),
        "predict",
        lambda self, *a, **k: predicted.append(1) or original(self, *a, **k),
    )
    model.fit(*train, epochs=2, batch_size=16, callbacks=[cb], verbose=0)
    # In situ, the measurement's function gave V's probabilities: no predict.
    assert len(predicted) == (0 if mode == "in_situ" else 1)
    recorded = cb.state.output_choice
    expected = model.select_output_mode(heldout)
    assert recorded["mode"] == expected.mode == model.output_mode
    assert recorded["scores"] == pytest.approx(expected.scores, abs=1e-6)
    assert recorded["weights"] == pytest.approx(expected.weights, rel=1e-4)
