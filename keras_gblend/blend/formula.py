"""Gradient-Blending weights from per-head losses: pure numpy, no Keras.

For every head k (each modality head and the fused head), losses are measured in
inference mode on a fixed subset `T'` of the training data and on a held-out split
`V` of the training data, at two checkpoints N and N + n:

    O_N  = L^V_N - L^T_N                       (overfitting)
    dO_k = O_{N+n} - O_N                       (change in overfitting)
    dG_k = L^V_N - L^V_{N+n}                   (generalisation; > 0 when V loss falls)
    OGR  = |dO_k / dG_k|
    w_k  = (dG_k / dO_k^2) / Z,   Z = sum_j dG_j / dO_j^2   (weights sum to 1)

Signs follow Eq. 3 of the paper (Fig. 3 prints dG with the opposite sign) and the
normaliser is the one that makes the weights sum to 1 (Proposition 1 prints a
factor 1/2). The paper is silent on edge cases; this module decides them:

* A head with `dG_k <= 0` does not generalise: its raw weight is 0.
* `dO_k` near 0 (or negative) would make `dG / dO^2` explode: `dO^2` is floored at
  `overfit_floor ** 2`. Negative `dO` is fine otherwise (only its square is used).
* A head whose `dG` or `dO` is NaN or infinite gets raw weight 0.
* If no head has a positive, finite raw weight, the result falls back to
  `fallback` (e.g. the previous weights, returned as they are: `min_weight` is
  not mixed in again) or to uniform weights, with `status == "fallback"`.
* `min_weight` mixes the weights with the uniform distribution so that every head
  keeps at least `min_weight`: `w = m + (1 - K m) w_raw`.

Weights returned are always finite, non-negative and sum to 1.

References:
    Wang, Tran, Feiszli. "What Makes Training Multi-Modal Classification Networks
    Hard?" CVPR 2020. https://arxiv.org/abs/1905.12681
"""

from __future__ import annotations

import dataclasses

import numpy as np

DEFAULT_OVERFIT_FLOOR = 1e-3


@dataclasses.dataclass(frozen=True)
class BlendEstimate:
    """The result of one G-Blend estimate, one entry per head.

    Attributes:
        weights: Blend weights, finite, `>= 0`, summing to 1.
        d_g: Generalisation `dG_k = L^V_N - L^V_{N+n}`.
        d_o: Change in overfitting `dO_k = O_{N+n} - O_N`.
        ogr: Overfitting-to-generalisation ratio `|dO_k / dG_k|` (`inf` when
            `dG_k == 0`, NaN when either delta is NaN).
        usable: Whether head k had a finite, positive `dG_k` and so a non-zero raw
            weight.
        status: `"ok"`, or `"fallback"` when no head generalised and the weights
            are the fallback ones.

    Example:

    >>> est = blend_weights(d_g=[0.1, -0.2], d_o=[0.1, 0.1])
    >>> est.weights.tolist(), est.usable.tolist(), est.status
    ([1.0, 0.0], [True, False], 'ok')
    """

    weights: np.ndarray
    d_g: np.ndarray
    d_o: np.ndarray
    ogr: np.ndarray
    usable: np.ndarray
    status: str


def _as_vector(name, value, size=None):
    array = np.asarray(value, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(
            f"`{name}` must be a non-empty 1-D sequence with one value per head. "
            f"Received shape {array.shape}."
        )
    if size is not None and array.size != size:
        raise ValueError(
            f"`{name}` must have one value per head ({size} heads). "
            f"Received {array.size} values."
        )
    return array


def overfitting(train_loss, heldout_loss):
    """Overfitting `O = L^V - L^T` per head.

    Args:
        train_loss: Per-head losses on the fixed training subset `T'`.
        heldout_loss: Per-head losses on the held-out split `V`.

    Returns:
        A float64 array of `heldout_loss - train_loss`.

    Example:

    >>> overfitting([0.5, 0.2], [0.7, 0.9])
    array([0.2, 0.7])
    """
    train_loss = _as_vector("train_loss", train_loss)
    heldout_loss = _as_vector("heldout_loss", heldout_loss, train_loss.size)
    return heldout_loss - train_loss


def deltas(train_before, heldout_before, train_after, heldout_after):
    """Generalisation and overfitting deltas `(dG, dO)` between two checkpoints.

    Args:
        train_before: Per-head losses on `T'` at checkpoint N.
        heldout_before: Per-head losses on `V` at checkpoint N.
        train_after: Per-head losses on `T'` at checkpoint N + n.
        heldout_after: Per-head losses on `V` at checkpoint N + n.

    Returns:
        A tuple `(d_g, d_o)` of float64 arrays with
        `d_g = heldout_before - heldout_after` (positive when the held-out loss
        falls) and `d_o = O_after - O_before`.

    Example:

    >>> d_g, d_o = deltas([1.0], [1.2], [0.6], [1.0])
    >>> d_g.round(6), d_o.round(6)
    (array([0.2]), array([0.2]))
    """
    heldout_before = _as_vector("heldout_before", heldout_before)
    size = heldout_before.size
    heldout_after = _as_vector("heldout_after", heldout_after, size)
    d_g = heldout_before - heldout_after
    d_o = overfitting(train_after, heldout_after) - overfitting(
        _as_vector("train_before", train_before, size), heldout_before
    )
    return d_g, d_o


def ogr(d_g, d_o):
    """Overfitting-to-generalisation ratio `|dO / dG|` per head.

    Args:
        d_g: Generalisation deltas.
        d_o: Overfitting deltas.

    Returns:
        A float64 array; `inf` where `dG == 0` and `dO != 0`, NaN where both are 0
        or either is NaN.

    Example:

    >>> ogr([0.5, -0.1], [0.25, 0.3])
    array([0.5, 3. ])
    """
    d_g = _as_vector("d_g", d_g)
    d_o = _as_vector("d_o", d_o, d_g.size)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.abs(d_o / d_g)


def blend_weights(
    d_g,
    d_o,
    *,
    min_weight=0.0,
    overfit_floor=DEFAULT_OVERFIT_FLOOR,
    fallback=None,
):
    """G-Blend weights `w_k = (dG_k / dO_k^2) / Z` with every edge case decided.

    Args:
        d_g: Per-head generalisation deltas `dG_k` (see `deltas`).
        d_o: Per-head overfitting deltas `dO_k`.
        min_weight: Smallest weight any head may get, in `[0, 1 / num_heads]`.
            The raw weights are mixed with the uniform distribution:
            `w = min_weight + (1 - num_heads * min_weight) * w_raw`.
        overfit_floor: `dO_k^2` is floored at `overfit_floor ** 2` so that a head
            that does not overfit cannot produce an infinite weight. Must be > 0.
            Results are invariant to scaling all losses by one factor as long as
            every `|dO_k|` stays above the floor.
        fallback: Weights to use when no head generalises (every `dG_k <= 0` or
            non-finite), e.g. the previous weights. Defaults to uniform. They are
            validated and renormalised, not mixed with `min_weight` again (the
            weights stay where they were).

    Returns:
        A `BlendEstimate`.

    Raises:
        ValueError: If the inputs are not 1-D vectors of equal length, or
            `min_weight`, `overfit_floor` or `fallback` are out of range.

    Example:

    >>> est = blend_weights(d_g=[0.2, 0.1, 0.3], d_o=[0.1, 0.5, 0.2])
    >>> est.weights.round(3)
    array([0.717, 0.014, 0.269])
    >>> round(float(est.weights.sum()), 12)
    1.0
    """
    d_g = _as_vector("d_g", d_g)
    num_heads = d_g.size
    d_o = _as_vector("d_o", d_o, num_heads)
    if not 0.0 <= min_weight <= 1.0 / num_heads:
        raise ValueError(
            f"`min_weight` must be in [0, 1/num_heads] = [0, {1.0 / num_heads:.4g}]. "
            f"Received min_weight={min_weight}."
        )
    if not (np.isfinite(overfit_floor) and overfit_floor > 0):
        raise ValueError(
            f"`overfit_floor` must be a finite number > 0. Received {overfit_floor}."
        )

    usable = np.isfinite(d_g) & np.isfinite(d_o) & (d_g > 0)
    raw = np.zeros(num_heads)
    squared = np.maximum(np.square(np.where(usable, d_o, 0.0)), overfit_floor**2)
    raw[usable] = d_g[usable] / squared[usable]
    total = raw.sum()
    if usable.any() and np.isfinite(total) and total > 0:
        weights, status = raw / total, "ok"
        weights = min_weight + (1.0 - num_heads * min_weight) * weights
    else:
        weights, status = _fallback_weights(fallback, num_heads), "fallback"
    return BlendEstimate(
        weights=weights,
        d_g=d_g,
        d_o=d_o,
        ogr=ogr(d_g, d_o),
        usable=usable,
        status=status,
    )


def _fallback_weights(fallback, num_heads):
    if fallback is None:
        return np.full(num_heads, 1.0 / num_heads)
    fallback = _as_vector("fallback", fallback, num_heads)
    if not (np.all(np.isfinite(fallback)) and np.all(fallback >= 0)):
        raise ValueError(
            f"`fallback` weights must be finite and >= 0. Received {fallback}."
        )
    if fallback.sum() <= 0:
        raise ValueError(f"`fallback` weights must not all be 0. Received {fallback}.")
    total = fallback.sum()
    return fallback if total == 1.0 else fallback / total


def blend_from_losses(
    train_before,
    heldout_before,
    train_after,
    heldout_after,
    **kwargs,
):
    """Blend weights straight from per-head losses at two checkpoints.

    Shorthand for `blend_weights(*deltas(...), **kwargs)`.

    Args:
        train_before: Per-head losses on `T'` at checkpoint N.
        heldout_before: Per-head losses on `V` at checkpoint N.
        train_after: Per-head losses on `T'` at checkpoint N + n.
        heldout_after: Per-head losses on `V` at checkpoint N + n.
        **kwargs: Passed to `blend_weights` (`min_weight`, `overfit_floor`,
            `fallback`).

    Returns:
        A `BlendEstimate`.

    Example:

    >>> est = blend_from_losses([2.3, 2.3], [2.3, 2.3], [1.0, 0.2], [1.4, 1.9])
    >>> est.weights.round(3)
    array([0.976, 0.024])
    """
    return blend_weights(
        *deltas(train_before, heldout_before, train_after, heldout_after), **kwargs
    )


# How the weights G-Blend estimates (they sum to 1) become the loss weights a
# model trains with. With SGD a loss weight is a learning-rate factor per head.
WEIGHT_SCALES = ("max_one", "num_heads", "sum_to_one")


def scale_weights(weights, how):
    """The loss weights a model trains with, from blend weights summing to 1.

    Args:
        weights: Blend weights, one per head, non-negative, not all 0.
        how: `"max_one"`: divided by the largest, so the most-weighted head
            trains at the optimizer's learning rate and G-Blend only slows the
            others down (no head ever steps faster than the rate chosen for
            it); `"num_heads"`: multiplied by the number of heads (they sum to
            K+1, as every head at weight 1 does); `"sum_to_one"`: as they are
            (the paper).

    Returns:
        A float64 numpy vector with the blend weights' ratios.

    Example:

    >>> scale_weights([0.6, 0.1, 0.3], "max_one").round(3)
    array([1.   , 0.167, 0.5  ])
    >>> scale_weights([0.6, 0.1, 0.3], "num_heads").round(3)
    array([1.8, 0.3, 0.9])
    """
    if how not in WEIGHT_SCALES:
        raise ValueError(
            f"`weight_scale` must be one of {list(WEIGHT_SCALES)}. Received {how!r}."
        )
    weights = _as_vector("weights", weights)
    if not (
        np.all(np.isfinite(weights)) and np.all(weights >= 0) and weights.max() > 0
    ):
        raise ValueError(
            f"`weights` must be finite, >= 0 and not all 0. Received {weights}."
        )
    if how == "max_one":
        return weights / weights.max()
    return weights / weights.sum() * (len(weights) if how == "num_heads" else 1)
