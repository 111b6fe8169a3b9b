"""The uni-modal ensemble row: members, the mean, and weights fit on V only."""

import numpy as np
import pytest

from experiments import common, methods, rows
from keras_gblend import data
from keras_gblend.model import prediction

TINY = common.Config(epochs=2, subset_size=32)


def _task():
    ds = data.make_synthetic(num_train=120, num_test=40, dim_b=16, seed=0)
    return common.Task("synthetic", ds.train, ds.test, None, ds.num_classes)


def _outcomes(ctx):
    return {o.name: o for o in rows.unimodal_ensemble(ctx)}


def _member_probs(outcomes, x):
    return {
        m: outcomes[f"unimodal_{m}"].model.predict({m: x[m]}, verbose=0) for m in "ab"
    }


def test_the_mean_ensemble_predicts_the_mean_of_its_members():
    ctx = common.make_context(_task(), TINY)
    outcomes = _outcomes(ctx)
    assert list(outcomes) == [
        "unimodal_a",
        "unimodal_b",
        "ensemble_mean",
        "ensemble_fit_v",
    ]
    x = ctx.task.test[0]
    members = _member_probs(outcomes, x)
    mean = outcomes["ensemble_mean"].model.predict(x, verbose=0)
    np.testing.assert_allclose(mean, (members["a"] + members["b"]) / 2, atol=1e-6)
    assert outcomes["ensemble_mean"].weights == {"a": 0.5, "b": 0.5}


def test_the_fit_ensemble_weights_come_from_v_and_combine_the_members():
    ctx = common.make_context(_task(), TINY)
    seen = []
    fit = prediction.fit_combination_weights

    def spy(probs, labels):
        seen.append(np.asarray(labels))
        return fit(probs, labels)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(prediction, "fit_combination_weights", spy)
        outcomes = _outcomes(ctx)
    (labels,) = seen
    np.testing.assert_array_equal(labels, ctx.heldout[1])  # V, not test
    weights = outcomes["ensemble_fit_v"].weights
    v_probs = _member_probs(outcomes, ctx.heldout[0])
    assert weights == pytest.approx(fit(v_probs, ctx.heldout[1]), abs=1e-5)
    x = ctx.task.test[0]
    members = _member_probs(outcomes, x)
    expected = sum(weights[m] * members[m] for m in "ab")
    got = outcomes["ensemble_fit_v"].model.predict(x, verbose=0)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_run_method_scores_every_member_and_ensemble():
    task = _task()
    result = methods.run_method("unimodal_ensemble", task, TINY)
    by_name = {r["method"]: r for r in result}
    assert set(by_name) == {
        "unimodal_a",
        "unimodal_b",
        "ensemble_mean",
        "ensemble_fit_v",
    }
    for name in ("ensemble_mean", "ensemble_fit_v"):
        row = by_name[name]
        assert row["head_accuracy"] == {name: row["accuracy"]}
        assert sum(row["weights"].values()) == pytest.approx(1.0)
