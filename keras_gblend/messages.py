"""What G-Blend tells the user: warning categories, estimate lines, their place.

Warnings are attributed to the user's own code (the `fit` call), not to the
package or Keras, and the callback emits them after Keras's progress-bar line.
"""

from __future__ import annotations

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
    libraries = [os.path.dirname(keras.__file__), os.path.dirname(__file__)]
    if "tensorflow" in sys.modules:
        libraries.append(os.path.dirname(sys.modules["tensorflow"].__file__))
    frame, level = sys._getframe(1), 2
    while frame.f_back and frame.f_code.co_filename.startswith(tuple(libraries)):
        frame, level = frame.f_back, level + 1
    warnings.warn(warning, stacklevel=level)


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
                "keras_gblend.callbacks.AdaptiveOptimizerWarning)."
            )
        )


def estimate_messages(heads, record, previous, min_weight):
    """The warnings and the printed line of one estimate.

    Args:
        heads: Head names.
        record: The `state.Estimate` just made.
        previous: The estimate before it, or None.
        min_weight: The callback's minimum weight.

    Returns:
        A list of `GBlendWarning`s (no head generalised; a head newly at the
        minimum, within `COLLAPSE_TOLERANCE`) followed by the estimate line.

    Example:

    >>> from keras_gblend.state import Estimate
    >>> e = Estimate(4, "ok", [0.95, 0.05], [0.2, -0.1], [0.1, 0.3], [0.5, 3.0])
    >>> *warned, line = estimate_messages(("a", "fused"), e, None, 0.05)
    >>> line
    'G-Blend epoch 4: weights a 0.950 (dG +0.2000, dO +0.1000), fused 0.050 (dG -0.1000, dO +0.3000)'
    >>> str(warned[0]).split(" for ")[1]
    'fused (weight 0.0500, dG=-0.1, dO=+0.3). It overfits faster than it generalises (dG <= 0 or large dO).'
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
        f"{h} (weight {w:.4f}, dG={g:+.4g}, dO={o:+.4g})"
        for i, (h, w, g, o) in enumerate(zip(heads, *_columns(record)))
        if w <= limit and not (previous and previous.weights[i] <= limit)
    ]
    if low and record.status == "ok":
        found.append(
            GBlendWarning(
                f"G-Blend at epoch {record.epoch}: weight collapsed to the minimum "
                f"{min_weight} for {', '.join(low)}. It overfits faster than it "
                "generalises (dG <= 0 or large dO)."
            )
        )
    parts = ", ".join(
        f"{h} {w:.3f} (dG {g:+.4f}, dO {o:+.4f})"
        for h, w, g, o in zip(heads, *_columns(record))
    )
    return found + [f"G-Blend epoch {record.epoch}: weights {parts}"]


def _columns(record):
    return record.weights, record.d_g, record.d_o
