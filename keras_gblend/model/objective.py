"""The unweighted training objective: a loss whose scale the blend weights never change.

Keras logs `loss` as the blended sum `sum_k w_k L_k`; every re-weighting by
`GBlendCallback` changes its scale (it can jump while every head's loss falls),
so `EarlyStopping` or `ReduceLROnPlateau` monitoring `loss` or `val_loss`
misfire. A compiled `GBlendModel` also logs `OBJECTIVE`, `"mean_head_loss"`:
the mean of the heads' unweighted losses (the `<head>_loss` values Keras logs),
independent of the blend weights, with its `val_` twin when `fit` has
validation data. Keras's callbacks monitor it without `mode=` (it is a metric of
the model whose direction is "down").
"""

from __future__ import annotations

import keras
from keras import ops

# Private Keras: `MonitorCallback` infers `mode="auto"` only for `loss` and for
# metrics held in these containers (keras/src/callbacks/monitor_callback.py).
from keras.src.trainers.compile_utils import MetricsList

from keras_gblend.common import messages

OBJECTIVE = "mean_head_loss"
# Callbacks that pick a best or plateau value of their `monitor`.
_MONITORS = (
    keras.callbacks.EarlyStopping,
    keras.callbacks.ReduceLROnPlateau,
    keras.callbacks.ModelCheckpoint,
)


class MeanHeadLoss(keras.metrics.Metric):
    """The mean of a multi-head model's per-head (unweighted) losses.

    It holds no state: its result is the mean of the results of Keras's
    per-head loss trackers (`<head>_loss`), so it is reset, aggregated and
    averaged exactly as they are, and logged under `OBJECTIVE` by `fit` and
    `evaluate`. `GBlendModel.compile` adds it; there is no need to create one.

    Args:
        model: The model whose heads' losses are averaged.
        head_names: Names of the heads (the model's output keys).

    Example:

    >>> import numpy as np
    >>> from keras_gblend import build_gblend_model
    >>> branches = {
    ...     n: keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    ...     for n in ("a", "b")
    ... }
    >>> model = build_gblend_model(branches, num_classes=2)
    >>> model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    >>> model.set_blend_weights([0.0, 0.0, 3.0])
    >>> x = {n: np.ones((4, 4), "float32") for n in ("a", "b")}
    >>> logs = model.evaluate(x, np.zeros(4), verbose=0, return_dict=True)
    >>> heads = [logs[f"{h}_loss"] for h in ("a", "b", "fused")]
    >>> bool(np.isclose(logs[OBJECTIVE], np.mean(heads)))
    True
    >>> bool(np.isclose(logs["loss"], 3 * logs["fused_loss"]))
    True
    """

    def __init__(self, model, head_names):
        super().__init__(name=OBJECTIVE)
        self._direction = "down"  # What `EarlyStopping(mode="auto")` reads.
        names = {f"{h}_loss" for h in head_names}
        self._trackers = lambda: [m for m in model.metrics if m.name in names]

    def update_state(self, *args, **kwargs):
        pass  # Keras's per-head trackers are updated by the model's loss.

    def reset_state(self):
        pass  # `model.reset_metrics` resets the per-head trackers.

    def result(self):
        values = [m.result() for m in self._trackers()]
        if not values:  # Before the first step builds the trackers.
            return ops.zeros((), dtype=self.dtype)
        return ops.mean(ops.stack(values))


class ObjectiveMetrics(MetricsList):
    """Holds `MeanHeadLoss` where Keras's `mode="auto"` looks for a direction."""

    def __init__(self, model, head_names):
        super().__init__([MeanHeadLoss(model, head_names)], name="gblend_objective")

    def result(self):
        return self.get_result()


def check_monitors(callbacks):
    """Warns once when a callback monitors the blended `loss` or `val_loss`.

    Called by `GBlendModel.fit` with a `GBlendCallback` among the callbacks:
    the re-weighting changes the scale of `loss`, so a best value or a plateau
    of it means nothing.

    Args:
        callbacks: The other callbacks passed to `fit`.

    Warns:
        GBlendWarning: One for all of `EarlyStopping`, `ReduceLROnPlateau` and
            `ModelCheckpoint(save_best_only=True)` monitoring `loss` or
            `val_loss`, naming the key to monitor instead.

    Example:

    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     check_monitors([keras.callbacks.EarlyStopping(monitor="loss")])
    >>> "monitor='mean_head_loss'" in str(caught[0].message)
    True
    """
    found = [
        c
        for c in callbacks
        if isinstance(c, _MONITORS)
        and getattr(c, "monitor", None) in ("loss", "val_loss")
        and getattr(c, "save_best_only", True)
    ]
    if not found:
        return
    names = ", ".join(
        f"{type(c).__name__}(monitor={c.monitor!r}) -> monitor="
        f"{c.monitor.replace('loss', OBJECTIVE)!r}"
        for c in found
    )
    messages.warn(
        messages.GBlendWarning(
            "G-Blend: `loss` is the blended sum of the heads' losses; its scale "
            "changes each time GBlendCallback re-weights the heads (it can jump "
            "while every head's loss falls), so its best value or a plateau means "
            f"nothing. Monitor {OBJECTIVE!r} (the mean of the heads' unweighted "
            f"losses; 'val_{OBJECTIVE}' on the validation data) instead: {names}."
        )
    )
