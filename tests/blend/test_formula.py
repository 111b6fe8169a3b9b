"""Tests of the pure blending math against values computed by hand in the test."""

import numpy as np
import pytest

from keras_gblend.blend import formula


def test_deltas_follow_eq3_signs():
    # Checkpoint N: T' losses 1.0, V losses 1.2; N+n: T' 0.6, V 1.0.
    d_g, d_o = formula.deltas([1.0], [1.2], [0.6], [1.0])
    # dG = L^V_N - L^V_{N+n} = 1.2 - 1.0 (positive: held-out loss fell).
    np.testing.assert_allclose(d_g, [0.2])
    # O_N = 0.2, O_{N+n} = 0.4 -> dO = 0.2.
    np.testing.assert_allclose(d_o, [0.2])


def test_heldout_loss_rising_gives_negative_dg():
    d_g, _ = formula.deltas([1.0], [1.0], [0.5], [1.3])
    np.testing.assert_allclose(d_g, [-0.3])


def test_weights_match_hand_computation():
    d_g = np.array([0.2, 0.1, 0.3])
    d_o = np.array([0.1, 0.5, 0.2])
    raw = np.array([0.2 / 0.01, 0.1 / 0.25, 0.3 / 0.04])  # 20, 0.4, 7.5
    est = formula.blend_weights(d_g, d_o)
    np.testing.assert_allclose(est.weights, raw / raw.sum())
    np.testing.assert_allclose(est.ogr, [0.5, 5.0, 2 / 3])
    assert est.status == "ok"
    assert est.usable.all()


def test_weights_sum_to_one_not_two():
    # Proposition 1 prints Z with a factor 1/2, which would sum to 2.
    est = formula.blend_weights([0.5, 0.25], [0.5, 0.5])
    np.testing.assert_allclose(est.weights, [2 / 3, 1 / 3])  # Not [4/3, 2/3].


def test_published_kinetics_like_ordering():
    # A head that generalises well with little overfitting dominates; a head that
    # overfits a lot gets almost nothing (the paper's audio weight is 0.014).
    est = formula.blend_weights(d_g=[0.30, 0.05, 0.25], d_o=[0.05, 0.40, 0.06])
    assert est.weights[0] > est.weights[2] > est.weights[1]
    assert est.weights[1] < 0.01


@pytest.mark.parametrize("scale", [0.01, 0.5, 3.0, 1000.0])
def test_invariant_to_scaling_all_losses(scale):
    rng = np.random.default_rng(0)
    before_t, before_v = rng.uniform(1, 2, 4), rng.uniform(1.5, 2.5, 4)
    after_t, after_v = before_t - rng.uniform(0.3, 0.6, 4), before_v - 0.1
    base = formula.blend_from_losses(before_t, before_v, after_t, after_v)
    scaled = formula.blend_from_losses(
        *(scale * v for v in (before_t, before_v, after_t, after_v)),
        overfit_floor=1e-9,
    )
    np.testing.assert_allclose(scaled.weights, base.weights, rtol=1e-9)


def test_equivariant_to_permuting_heads():
    d_g = np.array([0.2, 0.05, 0.3, 0.1])
    d_o = np.array([0.1, -0.2, 0.25, 0.05])
    perm = np.array([2, 0, 3, 1])
    base = formula.blend_weights(d_g, d_o).weights
    permuted = formula.blend_weights(d_g[perm], d_o[perm]).weights
    np.testing.assert_allclose(permuted, base[perm])


def test_non_generalising_head_gets_zero_weight():
    est = formula.blend_weights(d_g=[0.2, 0.0, -0.1], d_o=[0.1, 0.1, 0.1])
    np.testing.assert_allclose(est.weights, [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(est.usable, [True, False, False])


def test_negative_overfitting_delta_uses_its_square():
    est = formula.blend_weights(d_g=[0.1, 0.1], d_o=[-0.1, 0.2])
    np.testing.assert_allclose(est.weights, [0.8, 0.2])


def test_tiny_overfitting_is_floored():
    est = formula.blend_weights(d_g=[0.1, 0.1], d_o=[0.0, 1e-9], overfit_floor=0.01)
    np.testing.assert_allclose(est.weights, [0.5, 0.5])
    assert np.isfinite(est.weights).all()
    est = formula.blend_weights(d_g=[0.1, 0.1], d_o=[0.0, 0.1], overfit_floor=0.01)
    # 0.1 / 1e-4 = 1000 versus 0.1 / 0.01 = 10.
    np.testing.assert_allclose(est.weights, [1000 / 1010, 10 / 1010])


def test_all_heads_not_generalising_falls_back_to_uniform():
    est = formula.blend_weights(d_g=[-0.1, 0.0, -0.3], d_o=[0.1, 0.2, 0.3])
    assert est.status == "fallback"
    np.testing.assert_allclose(est.weights, [1 / 3] * 3)


def test_all_heads_not_generalising_keeps_previous_weights():
    est = formula.blend_weights(d_g=[-0.1, -0.2], d_o=[0.1, 0.2], fallback=[0.3, 0.9])
    assert est.status == "fallback"
    np.testing.assert_allclose(est.weights, [0.25, 0.75])


def test_fallback_weights_are_not_mixed_with_min_weight_again():
    # Mixing again would move them to 0.4 + 0.2 * [0.7, 0.3] = [0.54, 0.46].
    est = formula.blend_weights(
        d_g=[-0.1, -0.2], d_o=[0.1, 0.2], fallback=[0.7, 0.3], min_weight=0.4
    )
    assert est.status == "fallback"
    assert est.weights.tolist() == [0.7, 0.3]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_losses_never_give_non_finite_weights(bad):
    est = formula.blend_weights(d_g=[0.2, bad, 0.1], d_o=[0.1, 0.1, bad])
    np.testing.assert_allclose(est.weights, [1.0, 0.0, 0.0])
    est = formula.blend_from_losses([bad, bad], [1.0, 1.0], [0.5, 0.5], [0.8, bad])
    # Head 0's dO and head 1's dG are not finite: no usable head, uniform fallback.
    assert est.status == "fallback"
    np.testing.assert_allclose(est.weights, [0.5, 0.5])


def test_min_weight_mixes_with_uniform():
    est = formula.blend_weights(
        d_g=[0.2, -0.1, 0.1], d_o=[0.1, 0.1, 0.1], min_weight=0.1
    )
    # Raw [2/3, 0, 1/3] -> 0.1 + 0.7 * raw.
    np.testing.assert_allclose(est.weights, [0.1 + 0.7 * 2 / 3, 0.1, 0.1 + 0.7 / 3])
    assert est.weights.min() >= 0.1 - 1e-12


@pytest.mark.parametrize("seed", range(20))
def test_properties_on_random_inputs(seed):
    rng = np.random.default_rng(seed)
    size = int(rng.integers(2, 6))
    d_g = rng.normal(size=size)
    d_o = rng.normal(scale=rng.choice([1e-6, 0.1, 10]), size=size)
    if seed % 3 == 0:
        d_g[rng.integers(size)] = np.nan
    min_weight = rng.uniform(0, 1 / size)
    est = formula.blend_weights(d_g, d_o, min_weight=min_weight)
    # The closed form, computed independently.
    usable = np.isfinite(d_g) & (d_g > 0)
    raw = np.where(usable, d_g / np.maximum(d_o**2, 1e-6), 0.0)
    if raw.sum() > 0:
        expected = min_weight + (1 - size * min_weight) * raw / raw.sum()
    else:
        expected = np.full(size, 1 / size)
    np.testing.assert_allclose(est.weights, expected, rtol=1e-9, atol=1e-12)
    assert (est.weights >= min_weight - 1e-12).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(d_g=[0.1, 0.2], d_o=[0.1]), "`d_o` must have one value per head"),
        (dict(d_g=[[0.1, 0.2]], d_o=[0.1, 0.2]), "`d_g` must be a non-empty 1-D"),
        (dict(d_g=[], d_o=[]), "`d_g` must be a non-empty 1-D"),
        (dict(d_g=[0.1, 0.2], d_o=[0.1, 0.2], min_weight=0.6), "`min_weight`"),
        (dict(d_g=[0.1, 0.2], d_o=[0.1, 0.2], min_weight=-0.1), "`min_weight`"),
        (dict(d_g=[0.1, 0.2], d_o=[0.1, 0.2], overfit_floor=0.0), "`overfit_floor`"),
        (dict(d_g=[-1, -1], d_o=[0.1, 0.2], fallback=[0, 0]), "`fallback`"),
        (dict(d_g=[-1, -1], d_o=[0.1, 0.2], fallback=[-1, 2]), "`fallback`"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        formula.blend_weights(**kwargs)


def test_deltas_reject_mismatched_lengths():
    with pytest.raises(
        ValueError, match="`heldout_after` must have one value per head"
    ):
        formula.deltas([1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [1.0])
