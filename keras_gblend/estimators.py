"""G-Blend estimators: from the measurements so far to one set of blend weights.

An estimator is a pure numpy function called as
`estimator(measurements, *, min_weight, overfit_floor, fallback)` with
`measurements` the list of `keras_gblend.state.Measurement`s so far (latest
last); it returns a `keras_gblend.blending.BlendEstimate` whose weights sum to 1.
`ESTIMATORS` names the built-in ones; `get` resolves a name or a callable.
"""

from __future__ import annotations

from keras_gblend import blending


def paper(measurements, *, min_weight, overfit_floor, fallback):
    """The paper's estimate from the last two measurements (checkpoints N, N+n).

    Args:
        measurements: `state.Measurement`s, latest last; at least two.
        min_weight: See `blending.blend_weights`.
        overfit_floor: See `blending.blend_weights`.
        fallback: Weights when no head generalises (see `blending.blend_weights`).

    Returns:
        A `blending.BlendEstimate`.

    Raises:
        ValueError: With fewer than two measurements.

    Example:

    >>> from keras_gblend.state import Measurement
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
    return blending.blend_from_losses(
        before.train,
        before.heldout,
        after.train,
        after.heldout,
        min_weight=min_weight,
        overfit_floor=overfit_floor,
        fallback=fallback,
    )


ESTIMATORS = {"paper": paper}


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
