"""What G-Blend tells the user: warning categories, estimate lines, their place.

Every error about an argument has one form, that of `check_argument`: the
argument's name, what was expected, what was received. Warnings are attributed
to the user's own code (the `fit` call), not to the package or Keras, and the
callback emits them after Keras's progress-bar line.
"""

from __future__ import annotations

import math
import numbers
import os
import sys
import warnings

import keras

# Optimizers that rescale each parameter's gradient and so largely cancel loss weights.
ADAPTIVE_OPTIMIZERS = (
    "Adam", "AdamW", "Adamax", "Nadam", "RMSprop", "Adagrad", "Adadelta",
    "Adafactor", "Lion", "Lamb", "Ftrl", "Muon",
)  # fmt: skip
COLLAPSE_TOLERANCE = 1e-3  # A weight within this of `min_weight` has collapsed.


def forces_equal_weights(min_weight, num_heads):
    """Whether `min_weight` is (within `COLLAPSE_TOLERANCE`) `1 / num_heads`.

    The weights are `min_weight + (1 - num_heads * min_weight) * raw`: at
    `1 / num_heads` every weight is `1 / num_heads`, whatever the estimate.

    Example:

    >>> forces_equal_weights(1 / 3, 3), forces_equal_weights(0.05, 3)
    (True, False)
    """
    return 1.0 - num_heads * min_weight <= COLLAPSE_TOLERANCE


class GBlendWarning(UserWarning):
    """Warns that a G-Blend estimate or setting is degenerate.

    Example:

    >>> import warnings
    >>> warnings.filterwarnings("ignore", category=GBlendWarning)  # silence them
    """


class AdaptiveOptimizerWarning(GBlendWarning):
    """Warns that an adaptive optimizer (Adam, RMSprop, ...) cancels G-Blend.

    Example:

    >>> import warnings
    >>> warnings.filterwarnings("ignore", category=AdaptiveOptimizerWarning)
    """


def warn(warning):
    """Emits `warning` (a Warning instance) attributed to the user's code.

    Example:

    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warn(GBlendWarning("look"))
    >>> str(caught[0].message), caught[0].filename.endswith("keras_gblend")
    ('look', False)
    """
    package = os.path.dirname(os.path.dirname(__file__))  # keras_gblend/
    libraries = [os.path.dirname(keras.__file__), package]
    if "tensorflow" in sys.modules:
        libraries.append(os.path.dirname(sys.modules["tensorflow"].__file__))
    frame, level = sys._getframe(1), 2
    while frame.f_back and frame.f_code.co_filename.startswith(tuple(libraries)):
        frame, level = frame.f_back, level + 1
    warnings.warn(warning, stacklevel=level)


def check_argument(name, value, ok, expected):
    """Raises a `ValueError` naming the argument, what it expected and received.

    Args:
        name: The argument's name.
        value: What was received.
        ok: Whether `value` is valid.
        expected: What a valid value is, completing "`name` must be ...".

    Raises:
        ValueError: If not `ok`.

    Example:

    >>> check_argument("smoothing", 1.0, False, "in [0, 1)")
    Traceback (most recent call last):
    ...
    ValueError: `smoothing` must be in [0, 1). Received 1.0.
    """
    if not ok:
        raise ValueError(f"`{name}` must be {expected}. Received {value!r}.")


def check_one_of(name, value, choices):
    """Raises unless `value` is one of `choices` (see `check_argument`).

    Example:

    >>> check_one_of("mode", "fast", ("in_situ", "exact"))
    Traceback (most recent call last):
    ...
    ValueError: `mode` must be one of ['in_situ', 'exact']. Received 'fast'.
    """
    check_argument(name, value, value in choices, f"one of {list(choices)}")


def check_int(name, value, low):
    """Raises unless `value` is an int `>= low` (see `check_argument`).

    Example:

    >>> check_int("super_epoch", 0, 1)
    Traceback (most recent call last):
    ...
    ValueError: `super_epoch` must be an int >= 1. Received 0.
    """
    ok = isinstance(value, numbers.Integral) and value >= low
    check_argument(name, value, ok, f"an int >= {low}")


def emit(items):
    """Says `items` in order: warns the `Warning`s, prints the rest.

    The callback keeps what an epoch has to say and emits it after Keras's
    progress-bar line of that epoch.

    Example:

    >>> emit(["G-Blend epoch 3: weights ..."])
    G-Blend epoch 3: weights ...
    """
    for item in items:
        if isinstance(item, Warning):
            warn(item)
        else:
            print(item, flush=True)


def check_optimizer(optimizer):
    """Warns once (`AdaptiveOptimizerWarning`) if `optimizer` is adaptive.

    Example:

    >>> import keras, warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     check_optimizer(keras.optimizers.SGD())
    >>> caught
    []
    """
    name = type(getattr(optimizer, "inner_optimizer", optimizer)).__name__
    if name in ADAPTIVE_OPTIMIZERS:
        warn(
            AdaptiveOptimizerWarning(
                f"G-Blend with {name}: an adaptive optimizer rescales each "
                "parameter's gradient and largely cancels the per-head loss weights "
                "(measured: no better than naive fusion). Use SGD with momentum, or "
                "silence this with warnings.filterwarnings('ignore', category="
                "keras_gblend.training.callback.AdaptiveOptimizerWarning)."
            )
        )


def check_min_weight(min_weight, num_heads=None):
    """Checks `GBlendCallback`'s `min_weight`; warns if it forces equal weights.

    Args:
        min_weight: The smallest weight of a head.
        num_heads: None when the callback is built (it cannot know the number
            of heads): `min_weight` must be in `[0, 1)`. The model's number of
            heads when `fit` starts: `min_weight` must be at most
            `1 / num_heads`, and at `1 / num_heads` (every weight forced equal)
            a `GBlendWarning` says so.

    Raises:
        ValueError: If `min_weight` is out of its range, saying when it is
            checked.

    Example:

    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     check_min_weight(0.25, 4)
    >>> str(caught[0].message).split(":")[1]
    ' min_weight=0.25 is 1/num_heads for 4 heads'
    >>> check_min_weight(0.5, 3)
    Traceback (most recent call last):
    ...
    ValueError: `min_weight` must be in [0, 1/num_heads] = [0, 0.3333] for 3 heads (checked when fit starts, before any epoch). Received 0.5.
    """  # noqa: E501
    if num_heads is None:
        ok, bound = 0 <= min_weight < 1, "[0, 1) here, and at most 1/num_heads"
    else:
        ok = min_weight <= 1 / num_heads
        bound = f"[0, 1/num_heads] = [0, {1 / num_heads:.4g}] for {num_heads} heads"
    when = "(checked when fit starts, before any epoch)"
    check_argument("min_weight", min_weight, ok, f"in {bound} {when}")
    if num_heads is not None and forces_equal_weights(min_weight, num_heads):
        warn(
            GBlendWarning(
                f"G-Blend: min_weight={min_weight:.4g} is 1/num_heads for "
                f"{num_heads} heads: every weight is forced to "
                f"{1 / num_heads:.4g}, so the estimates (dG, dO) are measured and "
                "logged but never change the weights (naive training with equal "
                "weights). Lower min_weight (default 0.05) to let G-Blend "
                "re-weight the heads."
            )
        )


def diverged(loss, epoch):
    """The warning when the training loss is `loss` (NaN or inf) after `epoch`.

    Example:

    >>> str(diverged(float("nan"), 3)).split(": ")[1]
    'the training loss is nan at epoch 3'
    """
    return GBlendWarning(
        f"G-Blend: the training loss is {loss} at epoch {epoch}: stopped training. "
        "Check the training inputs for NaN or inf, or lower the learning rate."
    )


def check_schedule(epochs, first_estimate, warmup_epochs, super_epoch):
    """Warns when `fit(epochs=...)` ends before the first estimate.

    Args:
        epochs: `fit`'s `epochs` (the last epoch, counted from 1).
        first_estimate: The epoch after which the first estimate is made.
        warmup_epochs: The callback's `warmup_epochs`.
        super_epoch: The callback's `super_epoch`.

    Example:

    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     check_schedule(2, 5, 2, 3)
    >>> str(caught[0].message).split(":")[1]
    ' fit(epochs=2) ends before the first estimate, made after epoch 5 (warmup_epochs=2, super_epoch=3)'
    """  # noqa: E501
    if epochs is None or epochs >= first_estimate:
        return
    warn(
        GBlendWarning(
            f"G-Blend: fit(epochs={epochs}) ends before the first estimate, made "
            f"after epoch {first_estimate} (warmup_epochs={warmup_epochs}, "
            f"super_epoch={super_epoch}): the blend weights stay at their "
            "initial values for the whole run. Train for at least "
            f"{first_estimate} epochs, or lower warmup_epochs or super_epoch."
        )
    )


def estimate_messages(heads, record, previous, min_weight):
    """The warnings and the printed line of one estimate.

    A head is said to have collapsed only when its estimate put it at the
    floor (its weight newly within `COLLAPSE_TOLERANCE` of `min_weight`), with
    the reason its numbers give: `dG <= 0` (it does not generalise), or a
    `dG / dO^2` small next to the other heads'. At `min_weight = 1 / num_heads`
    every weight is forced equal: nothing is said of any head (see
    `check_min_weight`).

    Args:
        heads: Head names.
        record: The `state.Estimate` just made.
        previous: The estimate before it, or None.
        min_weight: The callback's minimum weight.

    Returns:
        A list of `GBlendWarning`s (no head generalised; a head newly at the
        minimum) followed by the estimate line.

    Example:

    >>> from keras_gblend.blend.state import Estimate
    >>> e = Estimate(4, "ok", [0.95, 0.05], [0.2, -0.1], [0.1, 0.3], [0.5, 3.0])
    >>> *warned, line = estimate_messages(("a", "fused"), e, None, 0.05)
    >>> line
    'G-Blend epoch 4: weights a 0.950 (dG +0.2000, dO +0.1000), fused 0.050 (dG -0.1000, dO +0.3000)'
    >>> str(warned[0]).split(" for ")[1]
    'fused (weight 0.0500, dG=-0.1, dO=+0.3): it does not generalise (dG <= 0).'
    """  # noqa: E501
    found, limit = [], min_weight + COLLAPSE_TOLERANCE
    if record.status == "fallback":
        changes = ", ".join(f"{h} dG={g:+.4g}" for h, g in zip(heads, record.d_g))
        found.append(
            GBlendWarning(
                f"G-Blend at epoch {record.epoch}: no head generalised ({changes}); "
                "kept the weights as they were. Training may overfit everywhere, "
                "or V is too small to measure a change."
            )
        )
    low = [
        f"{h} (weight {w:.4f}, dG={g:+.4g}, dO={o:+.4g}): {_why_low(g)}"
        for i, (h, w, g, o) in enumerate(zip(heads, *_columns(record)))
        if w <= limit and not (previous and previous.weights[i] <= limit)
    ]
    forced = forces_equal_weights(min_weight, len(heads))
    if low and record.status == "ok" and not forced:
        found.append(
            GBlendWarning(
                f"G-Blend at epoch {record.epoch}: weight collapsed to the minimum "
                f"{min_weight} for {'; '.join(low)}."
            )
        )
    parts = ", ".join(
        f"{h} {w:.3f} (dG {g:+.4f}, dO {o:+.4f})"
        for h, w, g, o in zip(heads, *_columns(record))
    )
    return found + [f"G-Blend epoch {record.epoch}: weights {parts}"]


def _why_low(d_g):
    if not math.isfinite(d_g):
        return "its dG is not finite, so it got no weight of its own"
    if d_g <= 0:
        return "it does not generalise (dG <= 0)"
    return "it generalises (dG > 0), but its dG/dO^2 is small next to the other heads'"


def _columns(record):
    return record.weights, record.d_g, record.d_o
