"""`CSVLogger`: a CSV log whose columns grow when a key first appears later.

G-Blend logs its estimate keys (`gblend_dG_<head>`, ...; see
`keras_gblend.blend.state.LOG_KEYS`) only at estimate epochs; Keras's
`CSVLogger` fixes its columns at the first epoch and would drop them. What
`GBlendModel.fit` does to the callbacks (order, progress bar, checks) is in
`keras_gblend.model.fit_setup`.
"""

from __future__ import annotations

import csv
import io
import os

import keras
import numpy as np

from keras_gblend.common import io_utils


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
