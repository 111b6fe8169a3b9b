"""Read G-Blend histories: the state file, `CSVLogger` CSV, Keras `History`.

`GBlendCallback` records what it does in its state (`keras_gblend.blend.state`, also
written to `state_path`) and in the epoch `logs` that `History`, `CSVLogger` and
`TensorBoard` pick up (`gblend_weight_<head>`, `gblend_dG_<head>`, ...).
`read_history` turns any of them into one tidy `BlendHistory`: per quantity, the
epochs at which it was recorded and one value per head.

Epochs are counted as epochs COMPLETED (the convention of `keras_gblend.blend.state`):
0 is before training, 1 is after the first epoch. `CSVLogger` and `History` rows
are 0-based epoch indices and are shifted by one here. A weight recorded at epoch
`e` is the one in force for the epochs after `e`.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
import warnings
from collections.abc import Mapping

import numpy as np

from keras_gblend.blend import state, state_file
from keras_gblend.common import io_utils
from keras_gblend.model.heads import FUSED

# The log quantities (`gblend_<quantity>_<head>`), as `keras_gblend.blend.state`
# defines them.
QUANTITIES = tuple(state.LOG_KEYS)
LOG_PREFIX = state.LOG_PREFIX
_ESTIMATED = tuple(
    q for q, (kind, _) in state.LOG_KEYS.items() if kind is state.Estimate
)
# Estimated quantities older files logged at every epoch (the same values until
# the next estimate): their rows are kept only where a value changes.
_PER_ESTIMATE = tuple(q for q in _ESTIMATED if q != state.IN_FORCE)


@dataclasses.dataclass(frozen=True)
class BlendHistory:
    """Per-head G-Blend quantities over training.

    Attributes:
        head_names: Head names, modalities first and the fused head last.
        epochs: Dict from quantity (one of `QUANTITIES` present in the source)
            to an int64 array `(n,)` of epochs completed when it was recorded.
        values: Dict from quantity to a float64 array `(n, len(head_names))`.

    Example:

    >>> h = BlendHistory(("a", "fused"), {"weight": np.array([3])},
    ...                  {"weight": np.array([[0.25, 0.75]])})
    >>> h.series("weight", "fused")
    (array([3]), array([0.75]))
    """

    head_names: tuple
    epochs: dict
    values: dict

    def series(self, quantity, head):
        """Returns `(epochs, values)` of one quantity for one head.

        Args:
            quantity: One of `QUANTITIES`.
            head: One of `head_names`.

        Returns:
            Two 1-D numpy arrays of equal length (empty if the quantity was
            not recorded).

        Raises:
            ValueError: If `quantity` or `head` is unknown.

        Example:

        >>> h = read_history({"gblend_weight_a": [0.5], "gblend_weight_fused": [0.5]})
        >>> h.series("weight", "a")
        (array([1]), array([0.5]))
        """
        if quantity not in QUANTITIES:
            raise ValueError(
                f"`quantity` must be one of {list(QUANTITIES)}. Received {quantity!r}."
            )
        if head not in self.head_names:
            raise ValueError(
                f"`head` must be one of {list(self.head_names)}. Received {head!r}."
            )
        if quantity not in self.values:
            return np.zeros(0, np.int64), np.zeros(0, np.float64)
        column = self.head_names.index(head)
        return self.epochs[quantity], self.values[quantity][:, column]


def read_history(source):
    """Reads a G-Blend history from a file, a `History`, a dict or the callback.

    Args:
        source: One of: a path to the callback's state JSON or to a `CSVLogger`
            CSV (told apart by content); a `keras.callbacks.History` (the
            return value of `fit`); its `.history` dict; a `state.BlendState`
            or its dict (`to_dict`); or a `GBlendCallback` after training.

    Returns:
        A `BlendHistory`.

    Raises:
        ValueError: If the source holds no `gblend_weight_<head>` values or no
            estimates, or is of an unknown type.
        OSError: If the file cannot be read.

    Example:

    >>> logs = {"loss": [1.0, 0.8], "gblend_weight_a": [0.5, 0.9],
    ...         "gblend_weight_fused": [0.5, 0.1]}
    >>> h = read_history(logs)
    >>> h.head_names, h.epochs["weight"].tolist()
    (('a', 'fused'), [1, 2])
    """
    if isinstance(source, state.BlendState):
        return _from_state(source)
    if isinstance(getattr(source, "state", None), state.BlendState):
        return _from_state(source.state)  # A GBlendCallback.
    if hasattr(source, "history") and hasattr(source, "epoch"):
        return _from_history_dict(source.history, source.epoch)
    if isinstance(source, Mapping):
        if "estimates" in source:
            return _from_state(state_file.state_from_dict(source))
        return _from_history_dict(source)
    if isinstance(source, (str, os.PathLike)):
        with open(source) as handle:
            text = handle.read()
        if text.lstrip().startswith("{"):
            return _from_state(state_file.load(source))
        return _from_csv(text, os.fspath(source))
    raise ValueError(
        "`source` must be a path, a keras History, a dict, a BlendState or a "
        f"GBlendCallback. Received {type(source).__name__}."
    )


def write_history_csv(path, blend_state):
    """Writes the estimates as a CSV in `CSVLogger`'s format, atomically.

    One row per estimate; `epoch` is the 0-based index of the epoch at whose end
    the estimate was made (as `CSVLogger` writes it), then `status` and the log
    keys (`gblend_weight_<head>`, `gblend_dG_<head>`, ...). `read_history` reads
    it.

    Args:
        path: Destination file.
        blend_state: A `state.BlendState` (e.g. `GBlendCallback.state`).

    Raises:
        OSError: If the file cannot be written.

    Example:

    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "blend.csv"
    >>> s = state.BlendState(("a", "fused"), (0.5, 0.5)).add(
    ...     state.Estimate(3, "ok", [0.2, 0.8], [0.1, 0.2], [0.1, 0.1], [1, 0.5]))
    >>> write_history_csv(path, s)
    >>> print(path.read_text().splitlines()[1])
    2,ok,0.2,0.8,0.1,0.2,0.1,0.1,1.0,0.5
    """
    heads = blend_state.head_names
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header = [state.log_key(q, h) for q in _ESTIMATED for h in heads]
    writer.writerow(["epoch", "status"] + header)
    for record in blend_state.estimates:
        values = list(state.log_values(record, heads).values())
        writer.writerow([record.epoch - 1, record.status] + values)
    io_utils.atomic_write_text(path, buffer.getvalue())


def _heads_from_keys(keys, prefix):
    heads = [k[len(prefix) :] for k in keys if k.startswith(prefix)]
    return tuple([h for h in heads if h != FUSED] + [h for h in heads if h == FUSED])


def _from_state(blend_state):
    heads = blend_state.head_names
    epochs, values = {}, {}
    columns = {}
    for quantity, (kind, name) in state.LOG_KEYS.items():
        rows = (
            blend_state.estimates
            if kind is state.Estimate
            else blend_state.measurements
        )
        columns[quantity] = [(r.epoch, getattr(r, name)) for r in rows]
    if blend_state.initial_weights is not None:  # In force from the start.
        columns[state.IN_FORCE].insert(0, (0, blend_state.initial_weights))
    for quantity, pairs in columns.items():
        if pairs:
            epochs[quantity] = np.array([e for e, _ in pairs], np.int64)
            values[quantity] = np.array([v for _, v in pairs], np.float64)
    return BlendHistory(heads, epochs, values)


def _from_history_dict(logs, epoch_indices=None):
    lengths = {k: len(v) for k, v in logs.items() if isinstance(v, (list, tuple))}
    if not lengths:
        raise ValueError("The History dict holds no per-epoch lists.")
    if epoch_indices is None:
        epoch_indices = range(max(lengths.values()))
    num_epochs = len(epoch_indices)
    ragged = sorted(
        k for k, n in lengths.items() if k.startswith(LOG_PREFIX) and n != num_epochs
    )
    if ragged:
        warnings.warn(
            f"History lists {ragged} have fewer entries than the {num_epochs} "
            "epochs (they were logged only at measurement epochs, and History "
            "does not record which): they are left out. Read the callback's "
            "state JSON or a keras_gblend.training.logs.CSVLogger file to get them.",
            UserWarning,
            stacklevel=3,
        )
    columns = {k: logs[k] for k, n in lengths.items() if n == num_epochs}
    return _from_columns(columns, np.asarray(epoch_indices, np.int64) + 1, "History")


def _from_csv(text, name):
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows or "epoch" not in rows[0]:
        raise ValueError(f"{name!r} is not a CSVLogger file (no 'epoch' column).")
    by_epoch = {int(float(r["epoch"])): r for r in rows}  # A resumed run: last wins.
    order = sorted(by_epoch)
    columns = {k: [by_epoch[e][k] for e in order] for k in rows[0] if k != "epoch"}
    return _from_columns(columns, np.array(order, np.int64) + 1, name)


def _from_columns(columns, epochs, name):
    heads = _heads_from_keys(columns, state.log_key(state.IN_FORCE, ""))
    if not heads:
        found = sorted(columns)
        raise ValueError(
            f"{name} holds no '{LOG_PREFIX}weight_<head>' values: was "
            "GBlendCallback placed before the logger in the callbacks list? "
            f"Found keys {found}."
        )
    out_epochs, out_values = {}, {}
    for quantity in QUANTITIES:
        keys = [state.log_key(quantity, h) for h in heads]
        if not all(k in columns for k in keys):
            continue
        table = np.array([[_float(v) for v in columns[k]] for k in keys]).T
        keep = ~np.all(np.isnan(table), axis=1)
        if quantity in _PER_ESTIMATE:
            previous = np.vstack([np.full(len(heads), np.nan), table[:-1]])
            keep &= ~np.all((table == previous) | np.isnan(table), axis=1)
        if keep.any():
            out_epochs[quantity] = epochs[keep]
            out_values[quantity] = table[keep]
    return BlendHistory(heads, out_epochs, out_values)


def _float(value):
    if value is None or value in ("", "NA"):
        return math.nan
    return float(value)
