"""What G-Blend shows and records while `model.fit` runs.

`GBlendModel.fit` passes its callbacks through `prepare_callbacks`: the
`GBlendCallback` goes first (so `CSVLogger`, `TensorBoard`, `EarlyStopping`,
`BackupAndRestore` see its keys of the same epoch; `EarlyStopping` and
`ReduceLROnPlateau` should monitor `mean_head_loss`, not the blended `loss`),
the progress bar is `ProgbarLogger` (Keras's, without G-Blend's per-estimate
diagnostics, which the callback prints on its own line), and mistakes that
only the training data reveal are reported before the first epoch (`V` in the
training data, `T'` in Keras's `validation_split` slice, a callback monitoring
the blended `loss`).
`CSVLogger` is a CSV log whose columns grow when a key first appears after the
first epoch.
"""

from __future__ import annotations

import csv
import io
import math
import os

import keras
import numpy as np

from keras_gblend.common import io_utils, messages
from keras_gblend.data import arrays
from keras_gblend.model import objective

# Logged at estimate or measurement epochs only; shown by the callback's own
# line, so the progress bar leaves them out (`gblend_weight_*` stay in it).
DETAIL_PREFIXES = tuple(
    f"gblend_{q}_" for q in ("dG", "dO", "ogr", "train_loss", "heldout_loss")
)


class ProgbarLogger(keras.callbacks.ProgbarLogger):
    """Keras's progress bar, without G-Blend's per-estimate diagnostics.

    At an estimate epoch `GBlendCallback` logs 5 more values per head
    (`gblend_dG_*`, `gblend_dO_*`, `gblend_ogr_*`, `gblend_train_loss_*`,
    `gblend_heldout_loss_*`) for `History`, `CSVLogger` and `TensorBoard`; in
    the bar they would wrap every estimate epoch over several lines, and the
    callback prints them in its own line anyway. The bar keeps Keras's values
    and the weights in force (`gblend_weight_*`, every epoch).
    `GBlendModel.fit` uses it unless a `keras.callbacks.ProgbarLogger` is passed.

    Example:

    >>> sorted(_shown({"loss": 1.0, "gblend_dG_a": 0.1, "gblend_weight_a": 1.0}))
    ['gblend_weight_a', 'loss']
    """

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, _shown(logs))


def _shown(logs):
    return {k: v for k, v in (logs or {}).items() if not k.startswith(DETAIL_PREFIXES)}


class CSVLogger(keras.callbacks.Callback):
    """Writes each epoch's logs to a CSV file whose columns grow as keys appear.

    Like `keras.callbacks.CSVLogger`, except that a key first logged after the
    first epoch (G-Blend's `gblend_dG_*`, ... at estimate epochs; `val_*` keys
    with `validation_freq`) gets a column instead of being dropped: the file is
    rewritten with the wider header. A cell is empty in the epochs where its key
    was not logged (nothing was measured), never `nan`. The whole file is
    written atomically after every epoch, so an interrupted run leaves a
    complete file; with `append=True` a resumed run (`initial_epoch > 0`)
    continues it, replacing rows from its first epoch on.

    Args:
        filename: Path of the CSV file.
        separator: Column separator.
        append: Continue an existing file instead of overwriting it.

    Example:

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "log.csv")
    >>> logger = CSVLogger(path)
    >>> logger.on_train_begin()
    >>> logger.on_epoch_end(0, {"loss": 0.5})
    >>> logger.on_epoch_end(1, {"loss": 0.25, "gblend_dG_a": 0.125})
    >>> with open(path) as handle:
    ...     print(handle.read().strip())
    epoch,gblend_dG_a,loss
    0,,0.5
    1,0.125,0.25
    """

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        if not isinstance(separator, str) or len(separator) != 1:
            raise ValueError(
                f"`separator` must be one character. Received {separator!r}."
            )
        self.filename = os.fspath(filename)
        self.separator, self.append = separator, append
        self._rows = []

    def on_train_begin(self, logs=None):
        self._rows = []
        if self.append and os.path.exists(self.filename):
            with open(self.filename, newline="") as handle:
                reader = csv.DictReader(handle, delimiter=self.separator)
                self._rows = [
                    {k: v for k, v in row.items() if v != ""} for row in reader
                ]

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": str(epoch)}
        row.update({k: _cell(v) for k, v in (logs or {}).items()})
        kept = [r for r in self._rows if int(r["epoch"]) < epoch]
        self._rows = kept + [row]
        columns = ["epoch"] + sorted({k for r in self._rows for k in r} - {"epoch"})
        out = io.StringIO()
        writer = csv.DictWriter(
            out, columns, delimiter=self.separator, lineterminator="\n"
        )
        writer.writeheader()
        writer.writerows(self._rows)
        io_utils.atomic_write_text(self.filename, out.getvalue())


def _cell(value):
    if isinstance(value, str):
        return value
    array = np.asarray(value)
    return repr(array.item()) if array.size == 1 else " ".join(map(str, array.ravel()))


def prepare_callbacks(callbacks, *, verbose, x, validation_split=0.0):
    """The callbacks `GBlendModel.fit` runs, checked and ordered.

    `GBlendCallback`s go first (other callbacks then see their keys of the same
    epoch); with a `GBlendCallback`, `verbose != 0` and no progress bar given,
    `ProgbarLogger` is added.

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
    """
    from keras_gblend.training.callback import GBlendCallback

    if callbacks is None or isinstance(callbacks, keras.callbacks.CallbackList):
        return callbacks
    callbacks = list(callbacks)
    blend = [c for c in callbacks if isinstance(c, GBlendCallback)]
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
                "which first appear later. Use keras_gblend.training.logs.CSVLogger (same "
                "arguments), which adds columns as they appear."
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
