"""G-Blend estimators: from the measurements so far to one set of blend weights.

An estimator is a pure numpy function called as
`estimator(measurements, *, min_weight, overfit_floor, fallback)` with
`measurements` the list of `keras_gblend.blend.state.Measurement`s so far (latest
last; in exact mode and offline, the copies' two measurements, before and after
training); it returns a `keras_gblend.blend.formula.BlendEstimate` whose weights sum
to 1. Measurements carry per-head standard errors (`train_sem`, `heldout_sem`)
for estimators that account for noise.
`ESTIMATORS` names the built-in ones; `get` resolves a name or a callable.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from keras_gblend.blend import formula


def paper(measurements, *, min_weight, overfit_floor, fallback):
    """The paper's estimate from the last two measurements (checkpoints N, N+n).

    Args:
        measurements: `state.Measurement`s, latest last; at least two.
        min_weight: See `formula.blend_weights`.
        overfit_floor: See `formula.blend_weights`.
        fallback: Weights when no head generalises (see `formula.blend_weights`).

    Returns:
        A `formula.BlendEstimate`.

    Raises:
        ValueError: With fewer than two measurements.

    Example:

    >>> from keras_gblend.blend.state import Measurement
    >>> ms = [Measurement(0, [2.3, 2.3], [2.3, 2.3]),
    ...       Measurement(3, [1.0, 0.2], [1.4, 1.9])]
    >>> paper(ms, min_weight=0.0, overfit_floor=1e-3, fallback=None).weights.round(3)
    array([0.976, 0.024])

    References:
        Wang, Tran, Feiszli. "What Makes Training Multi-Modal Classification
        Networks Hard?" CVPR 2020, Eq. 3 and Proposition 1.
    """
    if len(measurements) < 2:
        raise ValueError(
            "The 'paper' estimator needs two measurements (checkpoints N and "
            f"N + n). Received {len(measurements)}."
        )
    before, after = measurements[-2], measurements[-1]
    return formula.blend_from_losses(
        before.train,
        before.heldout,
        after.train,
        after.heldout,
        min_weight=min_weight,
        overfit_floor=overfit_floor,
        fallback=fallback,
    )


DEFAULT_WINDOW = 3
DEFAULT_SHRINK = 1.0


def window_deltas(measurements, window):
    """`dG`, `dO` and their standard errors from the last `window` measurements.

    Least-squares slopes over epochs of `L^V` and of `O = L^V - L^T`, times the
    window's span in epochs, so that two measurements give exactly the paper's
    two-point deltas: `dG = -slope(L^V) * span`, `dO = slope(O) * span`. Standard
    errors propagate the measurements' own (`heldout_sem`, `train_sem`; 0 where
    None or NaN), taken as independent: a slope is `sum_i c_i x_i`, so its variance is
    `sum_i c_i^2 sem_i^2`.

    Args:
        measurements: Latest last, at least two.
        window: Measurements used (>= 2); fewer if fewer exist.

    Returns:
        `(d_g, d_o, se_g, se_o)`, float64 arrays with one value per head.

    Raises:
        ValueError: With fewer than two measurements or `window < 2`.

    Example:

    >>> from keras_gblend.blend.state import Measurement as M
    >>> ms = [M(e, [1 - 0.1 * e], [2 - 0.05 * e]) for e in (0, 3, 6)]
    >>> [v.round(3).tolist() for v in window_deltas(ms, 3)]
    [[0.3], [0.3], [0.0], [0.0]]
    """
    if window < 2 or len(measurements) < 2:
        raise ValueError(
            "A G-Blend estimate needs a window >= 2 and two measurements. "
            f"Received window={window}, {len(measurements)} measurement(s)."
        )
    used = measurements[-window:]
    t = np.array([m.epoch for m in used], np.float64)
    span = t[-1] - t[0]
    if span <= 0:
        raise ValueError(f"Measurement epochs must increase. Received {t.tolist()}.")
    c = (t - t.mean()) / np.sum((t - t.mean()) ** 2) * span  # slope * span weights
    heldout = np.array([m.heldout for m in used], np.float64)
    train = np.array([m.train for m in used], np.float64)
    sem_v = _sems(used, "heldout_sem", heldout.shape)
    sem_t = _sems(used, "train_sem", heldout.shape)
    d_g = -c @ heldout
    d_o = c @ (heldout - train)
    se_g = np.sqrt((c**2) @ sem_v**2)
    se_o = np.sqrt((c**2) @ (sem_v**2 + sem_t**2))
    return d_g, d_o, se_g, se_o


def _sems(used, name, shape):
    rows = [getattr(m, name, None) for m in used]
    return np.array(
        [
            np.zeros(shape[1]) if r is None else np.nan_to_num(np.asarray(r, float))
            for r in rows
        ]
    )


def blend_robust(measurements, *, min_weight, overfit_floor, fallback, window, shrink):
    """G-Blend weights from windowed deltas, shrunk by their uncertainty.

    `dG` is soft-thresholded by `shrink` standard errors,
    `dG* = max(dG - shrink * se(dG), 0)` (a head whose generalisation is within
    `shrink` SE of 0 gets no raw weight), and `dO^2` is replaced by
    `dO^2 + se(dO)^2` (the expected square of a noisy `dO`: no head gets a huge
    weight only because its `dO` happened to land near 0). With `window=2`,
    `shrink=0` and no standard errors this is exactly the paper's estimate.

    Args:
        measurements: `state.Measurement`s, latest last; at least two.
        min_weight: See `formula.blend_weights`.
        overfit_floor: See `formula.blend_weights`.
        fallback: Weights when no head generalises (`formula.blend_weights`).
        window: Measurements the slopes use (see `window_deltas`).
        shrink: Standard errors subtracted from `dG` (>= 0).

    Returns:
        A `formula.BlendEstimate` whose `d_g`, `d_o` and `ogr` are the
        unshrunk deltas.

    Raises:
        ValueError: See `window_deltas` and `formula.blend_weights`.

    Example:

    >>> from keras_gblend.blend.state import Measurement as M
    >>> ms = [M(0, [2.0, 2.0], [2.0, 2.0]), M(3, [1.0, 0.2], [1.4, 1.9])]
    >>> blend_robust(ms, min_weight=0.0, overfit_floor=1e-3, fallback=None,
    ...              window=2, shrink=0.0).weights.round(3)
    array([0.991, 0.009])

    References:
        Wang, Tran, Feiszli. CVPR 2020, Eq. 3 and Proposition 1 (windows and
        uncertainty terms are this package's additions).
    """
    d_g, d_o, se_g, se_o = window_deltas(measurements, window)
    estimate = formula.blend_weights(
        np.where(np.isfinite(d_g), np.maximum(d_g - shrink * se_g, 0.0), d_g),
        np.sqrt(d_o**2 + se_o**2),
        min_weight=min_weight,
        overfit_floor=overfit_floor,
        fallback=fallback,
    )
    return dataclasses.replace(estimate, d_g=d_g, d_o=d_o, ogr=formula.ogr(d_g, d_o))


def uncertain(measurements, **settings):
    """The paper's two-point estimate with `dG` shrunk and `dO^2` floored by its SE.

    See `blend_robust` (`window=2`, `shrink=1`; `settings` are its
    `min_weight`, `overfit_floor` and `fallback`). Needs the measurements'
    standard errors; without them it is the paper's estimate.

    Example:

    >>> from keras_gblend.blend.state import Measurement as M
    >>> ms = [M(0, [2.0, 2.0], [2.0, 2.0], [0.0, 0.0], [0.01, 0.01]),
    ...       M(3, [1.0, 1.0], [1.5, 1.99], [0.0, 0.0], [0.01, 0.01])]
    >>> uncertain(ms, min_weight=0.0, overfit_floor=1e-3, fallback=None).weights
    array([1., 0.])

    References:
        Wang, Tran, Feiszli. CVPR 2020, Eq. 3 and Proposition 1 (the
        uncertainty terms are this package's addition).
    """
    return blend_robust(measurements, window=2, shrink=DEFAULT_SHRINK, **settings)


def windowed(measurements, **settings):
    """The paper's weights from slopes over the last 3 measurements.

    See `blend_robust` (`window=3`, `shrink=0`; `settings` are its
    `min_weight`, `overfit_floor` and `fallback`).

    Example:

    >>> from keras_gblend.blend.state import Measurement as M
    >>> ms = [M(e, [2 - 0.2 * e, 2 - 0.3 * e], [2 - 0.1 * e, 2 - 0.05 * e])
    ...       for e in (0, 3, 6)]
    >>> windowed(ms, min_weight=0.0, overfit_floor=1e-3, fallback=None).weights.round(3)
    array([0.926, 0.074])
    """
    return blend_robust(measurements, window=DEFAULT_WINDOW, shrink=0.0, **settings)


def robust(measurements, **settings):
    """Windowed slopes (3 measurements) with the uncertainty terms of `uncertain`.

    See `blend_robust` (`window=3`, `shrink=1`).

    Example:

    >>> from keras_gblend.blend.state import Measurement as M
    >>> ms = [M(e, [2 - 0.2 * e, 2 - 0.3 * e], [2 - 0.1 * e, 2 - 0.05 * e],
    ...         [0.0, 0.0], [0.02, 0.02]) for e in (0, 3, 6)]
    >>> robust(ms, min_weight=0.0, overfit_floor=1e-3, fallback=None).weights.round(3)
    array([0.929, 0.071])
    """
    return blend_robust(
        measurements, window=DEFAULT_WINDOW, shrink=DEFAULT_SHRINK, **settings
    )


def fused_floor(estimator, floor=None):
    """Wraps `estimator` so that the fused head (the last head) keeps a share.

    The fused head's weight is raised to `floor` (default `1 / num_heads`, its
    uniform share: with `weight_scale="num_heads"` that is weight 1, what naive
    fusion gives its only head) and the other heads' weights shrink in
    proportion, so the weights still sum to 1. G-Blend's estimate then decides how
    the rest is spread over the modality heads, and the head the model outputs is
    never starved (a departure from the paper, which lets it fall to ~0).
    Because the modality heads shrink in proportion, one at `min_weight` can
    end below it (e.g. 0.05 -> 0.035 with two modalities); the measured recipe
    of `RESULTS.md` ran this way.

    Args:
        estimator: An estimator function (e.g. `paper`).
        floor: Least weight of the fused head, in `[0, 1]`; None for
            `1 / num_heads`.

    Returns:
        An estimator function.

    Example:

    >>> def fixed(measurements, **kwargs):
    ...     return formula.blend_weights([0.6, 0.3, 0.1], [1.0, 1.0, 1.0])
    >>> fused_floor(fixed)([], min_weight=0.0, overfit_floor=1e-3,
    ...                    fallback=None).weights.round(3)
    array([0.444, 0.222, 0.333])
    """

    def floored(measurements, *, min_weight, overfit_floor, fallback):
        estimate = estimator(
            measurements,
            min_weight=min_weight,
            overfit_floor=overfit_floor,
            fallback=fallback,
        )
        weights = floor_fused_share(estimate.weights, floor)
        return dataclasses.replace(estimate, weights=weights)

    return floored


def floor_fused_share(weights, floor=None):
    """Raises the fused (last) weight to `floor`, shrinking the others in proportion.

    The vector form of `fused_floor`, e.g. for offline weights.

    Args:
        weights: Weights summing to 1, the fused head's last.
        floor: Least weight of the fused head, in `[0, 1]`; None for
            `1 / len(weights)`.

    Returns:
        A float64 array summing to 1 (`weights` unchanged if already above).

    Example:

    >>> floor_fused_share([0.9, 0.08, 0.02]).round(4)
    array([0.6122, 0.0544, 0.3333])
    """
    w = np.asarray(weights, np.float64)
    least = 1.0 / w.size if floor is None else floor
    if w[-1] >= least:
        return w
    rest = w[:-1].sum()
    head = w[:-1] * ((1.0 - least) / rest) if rest > 0 else w[:-1]
    return np.append(head, least)


def rate_normalised(estimator):
    """Wraps an in-situ `estimator` so each head's deltas are per unit of weight.

    In situ a head trains at a speed set by its own loss weight (under SGD its
    update is proportional to it), so its `dG` and `dO` shrink with the weight:
    a head held near `min_weight` barely changes, its `dO` lands near 0 and
    `dG / dO^2` hands it most of the weight next time; trained fast, it
    overfits and loses it again. The paper's Algorithm 3 trains every copy
    alike. This wrapper divides each head's losses and standard errors by its
    weight in force relative to uniform, `w_k * K`, so the deltas are, to first
    order, those of a head trained at the uniform share. The weights in force
    are the `fallback` the callback passes; with `fallback=None` the estimator
    runs unchanged. In-situ mode only (exact and offline train heads alike).

    Args:
        estimator: An estimator function (e.g. `paper`).

    Returns:
        An estimator function; its estimate's `d_g`, `d_o` are the normalised
        deltas.

    Example:

    >>> from keras_gblend.blend.state import Measurement as M
    >>> ms = [M(0, [2.0, 2.0], [2.0, 2.0]), M(3, [1.6, 1.9], [1.8, 1.96])]
    >>> kw = dict(min_weight=0.0, overfit_floor=1e-3)
    >>> paper(ms, fallback=np.array([0.9, 0.1]), **kw).weights.round(3)
    array([0.31, 0.69])
    >>> rate_normalised(paper)(ms, fallback=np.array([0.9, 0.1]), **kw).weights.round(3)
    array([0.802, 0.198])

    References:
        Wang, Tran, Feiszli. CVPR 2020, Algorithm 3 (the normalisation is this
        package's addition for in-situ estimation).
    """

    def normalised(measurements, *, min_weight, overfit_floor, fallback):
        settings = dict(
            min_weight=min_weight, overfit_floor=overfit_floor, fallback=fallback
        )
        if fallback is None:
            return estimator(measurements, **settings)
        w = np.asarray(fallback, np.float64)
        if w.ndim != 1 or w.size != len(measurements[-1].train) or np.any(w <= 0):
            raise ValueError(
                "`fallback` (the weights in force) must hold one positive weight "
                f"per head. Received {fallback!r}."
            )
        rate = w * w.size / w.sum()
        scaled = [_per_unit(m, rate) for m in measurements]
        return estimator(scaled, **settings)

    return normalised


def _per_unit(measurement, rate):
    def divided(values):
        return None if values is None else tuple(np.asarray(values) / rate)

    return dataclasses.replace(
        measurement,
        train=divided(measurement.train),
        heldout=divided(measurement.heldout),
        train_sem=divided(measurement.train_sem),
        heldout_sem=divided(measurement.heldout_sem),
    )


ESTIMATORS = {
    "paper": paper,
    "fused_floor": fused_floor(paper),  # GBlendCallback's preset "default"
    "uncertain": uncertain,
    "windowed": windowed,
    "robust": robust,
}


def get(estimator):
    """Returns the estimator named `estimator`, or `estimator` if callable.

    Raises:
        ValueError: If it is neither a callable nor a key of `ESTIMATORS`.

    Example:

    >>> get("paper") is paper
    True
    """
    if callable(estimator):
        return estimator
    if estimator not in ESTIMATORS:
        raise ValueError(
            f"`estimator` must be a callable or one of {sorted(ESTIMATORS)}. "
            f"Received {estimator!r}."
        )
    return ESTIMATORS[estimator]
