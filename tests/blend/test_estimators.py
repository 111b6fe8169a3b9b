"""G-Blend estimators: closed-form checks against the paper's formula."""

import numpy as np
import pytest

from keras_gblend.blend import estimators as est
from keras_gblend.blend import formula
from keras_gblend.blend.state import Measurement

KW = dict(min_weight=0.0, overfit_floor=1e-3, fallback=None)


def _m(epoch, train, heldout, train_sem=None, heldout_sem=None):
    return Measurement(epoch, train, heldout, train_sem, heldout_sem)


TWO = [_m(0, [2.3, 2.3, 2.3], [2.3, 2.3, 2.3]), _m(3, [1.0, 0.2, 0.6], [1.4, 1.9, 1.2])]


@pytest.mark.parametrize("name", ["uncertain", "windowed", "robust"])
def test_without_standard_errors_two_measurements_give_the_paper(name):
    expected = formula.blend_from_losses(
        TWO[0].train, TWO[0].heldout, TWO[1].train, TWO[1].heldout, **KW
    )
    got = getattr(est, name)(TWO, **KW)
    np.testing.assert_allclose(got.weights, expected.weights)
    np.testing.assert_allclose(got.d_g, expected.d_g)
    np.testing.assert_allclose(got.d_o, expected.d_o)


def test_window_slopes_are_least_squares_and_ignore_older_measurements():
    # Held-out loss falls 0.1 per epoch but one noisy middle point; the train
    # loss falls 0.2 per epoch. Slope through (0, 2), (2, 1.9), (4, 1.6): -0.1.
    ms = [
        _m(-10, [9.0], [9.0]),  # outside the window of 3
        _m(0, [2.0], [2.0]),
        _m(2, [1.6], [1.9]),
        _m(4, [1.2], [1.6]),
    ]
    d_g, d_o, se_g, se_o = est.window_deltas(ms, 3)
    assert d_g[0] == pytest.approx(0.1 * 4)  # -slope * span
    overfit = np.array([0.0, 0.3, 0.4])
    t = np.array([0.0, 2.0, 4.0])
    slope = np.polyfit(t, overfit, 1)[0]
    assert d_o[0] == pytest.approx(slope * 4)
    assert se_g[0] == 0 and se_o[0] == 0


def test_standard_errors_propagate_through_the_slope():
    sem = 0.02
    ms = [_m(e, [1.0], [1.0], [sem], [sem]) for e in (0, 3, 6)]
    _, _, se_g, se_o = est.window_deltas(ms, 3)
    # Slope * span weights over epochs (0, 3, 6): c = (t - 3) / 18 * 6 = (-1, 0, 1).
    assert se_g[0] == pytest.approx(sem * np.sqrt(2))
    assert se_o[0] == pytest.approx(sem * 2)


def test_uncertain_drops_a_head_whose_gain_is_within_one_standard_error():
    sems = [0.05, 0.05, 0.05]
    ms = [
        _m(0, [2.0] * 3, [2.0] * 3, [0.0] * 3, sems),
        _m(3, [1.0, 1.0, 1.0], [1.5, 1.95, 1.6], [0.0] * 3, sems),
    ]
    se = np.hypot(0.05, 0.05)
    got = est.uncertain(ms, **KW)
    d_g = np.array([0.5, 0.05, 0.4])
    d_o = np.array([0.5, 0.95, 0.6])
    raw = np.maximum(d_g - se, 0) / (d_o**2 + se**2)
    np.testing.assert_allclose(got.weights, raw / raw.sum())
    assert got.weights[1] == 0.0 and not got.usable[1]
    paper = est.blend_robust(ms, **KW, window=2, shrink=0.0)
    assert paper.weights[1] > 0.01  # without shrinkage the noisy head keeps weight
    np.testing.assert_allclose(got.d_g, d_g)  # reported deltas are the raw ones


def test_a_near_zero_overfit_change_cannot_take_all_the_weight():
    # Head 1's dO is 0.001 by chance, with an SE of 0.1: the paper gives it ~all.
    sems = [0.0, 0.05]
    ms = [
        _m(0, [2.0, 2.0], [2.0, 2.0], sems, sems),
        _m(3, [1.0, 1.849], [1.5, 1.85], sems, sems),
    ]
    before, after = ms
    paper = formula.blend_from_losses(
        before.train, before.heldout, after.train, after.heldout, **KW
    )
    assert paper.weights[1] > 0.99
    got = est.uncertain(ms, **KW)
    raw = np.array([0.5 / 0.5**2, (0.15 - np.hypot(0.05, 0.05)) / (0.001**2 + 0.1**2)])
    np.testing.assert_allclose(got.weights, raw / raw.sum())
    assert got.weights[1] < 0.85


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="two measurements"):
        est.windowed(TWO[:1], **KW)
    with pytest.raises(ValueError, match="increase"):
        est.window_deltas([TWO[0], TWO[0]], 2)


def test_fused_floor_raises_only_a_starved_fused_head():
    def fixed(weights):
        def estimator(measurements, **kwargs):
            return formula.blend_weights(weights, [1.0] * len(weights))

        return estimator

    got = est.fused_floor(fixed([0.7, 0.25, 0.05]))([], **KW).weights
    np.testing.assert_allclose(got, [0.7 * 2 / 3 / 0.95, 0.25 * 2 / 3 / 0.95, 1 / 3])
    kept = est.fused_floor(fixed([0.2, 0.2, 0.6]))([], **KW).weights
    np.testing.assert_allclose(kept, [0.2, 0.2, 0.6])
    half = est.fused_floor(fixed([0.5, 0.5, 0.0]), floor=0.5)([], **KW).weights
    np.testing.assert_allclose(half, [0.25, 0.25, 0.5])


def _rate_measurements(speed):
    """Two measurements whose deltas are proportional to each head's `speed`."""
    d_train, d_heldout = np.array([0.6, 0.9, 0.5]), np.array([0.3, 0.1, 0.35])
    start = np.full(3, 2.0)
    return [
        Measurement(0, start, start),
        Measurement(3, start - speed * d_train, start - speed * d_heldout),
    ]


def test_rate_normalised_undoes_the_speed_set_by_the_weights_in_force():
    kw = dict(min_weight=0.0, overfit_floor=1e-6)
    uniform = np.full(3, 1 / 3)
    reference = est.paper(_rate_measurements(np.ones(3)), fallback=None, **kw)
    in_force = np.array([0.1, 0.3, 0.6])
    # In situ, a head moves in proportion to its weight: the paper's estimate
    # changes with the weights in force, the normalised one does not.
    slowed = _rate_measurements(in_force * 3)
    assert not np.allclose(
        est.paper(slowed, fallback=in_force, **kw).weights, reference.weights
    )
    normalised = est.rate_normalised(est.paper)
    np.testing.assert_allclose(
        normalised(slowed, fallback=in_force, **kw).weights, reference.weights
    )
    # Uniform weights in force, or none known: the wrapped estimator unchanged.
    same = _rate_measurements(np.ones(3))
    for fallback in (uniform, None):
        np.testing.assert_allclose(
            normalised(same, fallback=fallback, **kw).weights, reference.weights
        )


def test_rate_normalised_refuses_weights_that_do_not_fit():
    normalised = est.rate_normalised(est.paper)
    ms = _rate_measurements(np.ones(3))
    with pytest.raises(ValueError, match="one positive weight per head"):
        normalised(ms, min_weight=0.0, overfit_floor=1e-3, fallback=[0.5, 0.5])
