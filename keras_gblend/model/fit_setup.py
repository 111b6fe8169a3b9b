"""What `GBlendModel.fit` does to the callbacks it is given, before Keras's `fit`.

`prepare_callbacks` finds the G-Blend callback by its marker, a class attribute
`runs_first = True` (`keras_gblend.training.callback.GBlendCallback` sets it;
this module, in the layer below, never imports it), and puts it first: then
`CSVLogger`, `TensorBoard`, `EarlyStopping` and `BackupAndRestore` see its keys
of the same epoch (`EarlyStopping` and `ReduceLROnPlateau` should monitor
`mean_head_loss`, not the blended `loss`). The progress bar is `ProgbarLogger`
(Keras's, without G-Blend's per-estimate diagnostics, which the callback prints
on its own line), and mistakes that only the training data reveal are reported
before the first epoch (`V` in the training data, `T'` in Keras's
`validation_split` slice, a callback monitoring the blended `loss`).
"""

from __future__ import annotations

import math

import keras
import numpy as np

from keras_gblend.blend import state
from keras_gblend.common import messages
from keras_gblend.data import arrays
from keras_gblend.model import objective

# Logged at estimate or measurement epochs only; shown by the callback's own
# line, so the progress bar leaves them out (the weights in force stay in it).
DETAIL_PREFIXES = tuple(
    state.log_key(q, "") for q in state.LOG_KEYS if q != state.IN_FORCE
)


class ProgbarLogger(keras.callbacks.ProgbarLogger):
    """Keras's progress bar, without G-Blend's per-estimate diagnostics.

    At an estimate epoch `GBlendCallback` logs 5 more values per head
    (`gblend_dG_*`, `gblend_dO_*`, `gblend_ogr_*`, `gblend_train_loss_*`,
    `gblend_heldout_loss_*`; see `keras_gblend.blend.state.LOG_KEYS`) for
    `History`, `CSVLogger` and `TensorBoard`; in the bar they would wrap every
    estimate epoch over several lines, and the callback prints them in its own
    line anyway. The bar keeps Keras's values and the weights in force
    (`gblend_weight_*`, every epoch). `GBlendModel.fit` uses it unless a
    `keras.callbacks.ProgbarLogger` is passed.

    Example:

    >>> sorted(_shown({"loss": 1.0, "gblend_dG_a": 0.1, "gblend_weight_a": 1.0}))
    ['gblend_weight_a', 'loss']
    """

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, _shown(logs))


def _shown(logs):
    return {k: v for k, v in (logs or {}).items() if not k.startswith(DETAIL_PREFIXES)}


def prepare_callbacks(callbacks, *, verbose, x, validation_split=0.0):
    """The callbacks `GBlendModel.fit` runs, checked and ordered.

    The G-Blend callback (a callback whose class sets `runs_first = True`:
    `GBlendCallback`) goes first, so that the other callbacks see its keys of
    the same epoch; with it, `verbose != 0` and no progress bar given,
    `ProgbarLogger` is added. It must have `train_subset`, `heldout` and
    `estimates_at(epoch)`.

    Args:
        callbacks: What was passed to `fit` (a list, None, or a
            `keras.callbacks.CallbackList`, which is returned as it is).
        verbose: `fit`'s `verbose`.
        x: `fit`'s `x`; a dict of arrays is compared with `T'` and `V`.
        validation_split: `fit`'s `validation_split`: the last part of `x`
            that Keras holds out (compared with `T'`).

    Returns:
        The list of callbacks to pass on to `keras.Model.fit`.

    Raises:
        ValueError: With two `GBlendCallback`s (both would assign the weights).

    Warns:
        GBlendWarning: When `V` shares examples with the training data `x`, or
            `T'` shares none with it (are `train_subset` and `heldout`
            swapped?), when `T'` shares examples with the `validation_split`
            slice, when a `keras.callbacks.CSVLogger` would drop the G-Blend
            keys that first appear after the first epoch, and when
            `EarlyStopping`, `ReduceLROnPlateau` or `ModelCheckpoint(
            save_best_only=True)` monitor `loss` or `val_loss` (once, naming
            `"mean_head_loss"`; see `keras_gblend.model.objective.check_monitors`).

    Example:

    >>> class Blend(keras.callbacks.Callback):
    ...     runs_first = True
    ...     train_subset = heldout = None
    ...     def estimates_at(self, epoch):
    ...         return True
    >>> stop, blend = keras.callbacks.EarlyStopping(monitor="mean_head_loss"), Blend()
    >>> order = prepare_callbacks([stop, blend], verbose=0, x=None)
    >>> [type(c).__name__ for c in order]
    ['Blend', 'EarlyStopping']
    """
    if callbacks is None or isinstance(callbacks, keras.callbacks.CallbackList):
        return callbacks
    callbacks = list(callbacks)
    blend = [c for c in callbacks if getattr(c, "runs_first", False) is True]
    if not blend:
        return callbacks
    if len(blend) > 1:
        raise ValueError(
            "`callbacks`: expected one GBlendCallback (each would assign the "
            f"weights). Received {len(blend)}. Pass one."
        )
    (gblend,) = blend
    others = [c for c in callbacks if c is not gblend]
    if verbose != 0 and not any(
        isinstance(c, keras.callbacks.ProgbarLogger) for c in others
    ):
        others.append(ProgbarLogger())
    if any(
        type(c) is keras.callbacks.CSVLogger for c in others
    ) and not gblend.estimates_at(1):
        messages.warn(
            messages.GBlendWarning(
                "keras.callbacks.CSVLogger fixes its columns at the first epoch, so "
                "it will not record G-Blend's estimate keys (gblend_dG_*, ...), "
                "which first appear later. Use keras_gblend.training.logs.CSVLogger "
                "(same arguments), which adds columns as they appear."
            )
        )
    objective.check_monitors(others)
    check_training_data(x, gblend.train_subset, gblend.heldout, validation_split)
    return [gblend] + others


def check_training_data(x, train_subset, heldout, validation_split=0.0):
    """Warns when `V` is in the training data `x` or `T'` is not.

    Only a dict of arrays with the same modalities, dtypes and shapes as `T'`
    and `V` is compared (datasets are not read). With `validation_split > 0`,
    Keras trains on the first part of `x` only and validates on the rest (its
    last `validation_split` fraction, taken before shuffling): `T'` must not
    share examples with that slice (it would measure a "training" loss on
    examples never trained on), and `V` is compared with the first part.

    Example:

    >>> import warnings
    >>> x = {"m": np.arange(6.0)}
    >>> inside, outside = ({"m": x["m"][:2]}, np.zeros(2)), ({"m": np.arange(7.0, 9.0)}, np.zeros(2))
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     check_training_data(x, outside, inside)
    >>> message = str(caught[0].message)
    >>> "V) shares 2 of its 2 examples" in message, "Are they swapped?" in message
    (True, True)
    """  # noqa: E501
    pairs = (train_subset, heldout)
    if not isinstance(x, dict) or not all(_comparable(x, p) for p in pairs):
        return
    num = len(next(iter(x.values())))
    split = int(math.floor(num * (1.0 - validation_split))) if validation_split else num
    training = ({k: v[:split] for k, v in x.items()}, None)  # Inputs only.
    in_v, n_v = arrays.count_shared(training, heldout), arrays.num_examples(heldout)
    in_t = arrays.count_shared(training, train_subset)
    sliced = ({k: v[split:] for k, v in x.items()}, None)
    in_slice = arrays.count_shared(sliced, train_subset) if split < num else 0
    found = []
    if in_v:
        found.append(
            f"`heldout` (V) shares {in_v} of its {n_v} examples with the training "
            "data passed to `fit`: V must never be trained on"
        )
    if in_t == 0:
        found.append(
            "`train_subset` (T') shares no example with the training data passed "
            "to `fit`: T' must be a subset of it (keras_gblend.data.sample_subset)"
        )
    if in_slice:
        messages.warn(
            messages.GBlendWarning(
                f"G-Blend: `validation_split={validation_split}` holds out the last "
                f"{num - split} of the {num} examples of `x` (Keras never trains on "
                f"them), but `train_subset` (T') shares {in_slice} of its "
                f"{arrays.num_examples(train_subset)} examples with that slice: T' "
                "must be a subset of the data trained on. Sample T' from the "
                f"first {split} examples, or split the validation data yourself "
                "and pass `validation_data=`."
            )
        )
    if found:
        swapped = (
            " Are they swapped? The order is GBlendCallback(train_subset, heldout)."
        )
        messages.warn(
            messages.GBlendWarning(
                "G-Blend: "
                + "; ".join(found)
                + "."
                + (swapped if len(found) == 2 else "")
            )
        )


def _comparable(x, pair):
    if arrays.is_dataset(pair) or sorted(x) != sorted(pair[0]):
        return False
    return all(
        isinstance(x[k], np.ndarray)
        and x[k].dtype == np.asarray(v).dtype
        and x[k].shape[1:] == np.shape(v)[1:]
        for k, v in pair[0].items()
    )
