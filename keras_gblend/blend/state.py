"""The G-Blend record: measurements, estimates and their log keys.

This module is the one owner of the record and of its log keys (`LOG_KEYS`);
the callback writes through it and `keras_gblend.report.history` reads
through it.

One head order everywhere: every per-head sequence of `keras_gblend.blend`
(measured losses, estimates, weights) is in `head_names` order, the modalities
first and the fused head LAST. `keras_gblend.blend` never imports
`keras_gblend.model` (where the fused head's name, `FUSED`, lives): a blend
function that treats the fused head apart takes it as the last head.

One epoch convention everywhere: `epoch` counts epochs COMPLETED. 0 is before
training, `e` is after the e-th epoch (what `model.fit(initial_epoch=e)` resumes
from). A measurement at epoch `e` was taken on the model after `e` epochs; an
estimate at epoch `e` set the weights in force from epoch `e + 1` on.

The state file (its JSON format, version 1 files, `save` / `load`) is
`keras_gblend.blend.state_file`.
"""

from __future__ import annotations

import dataclasses
import math

from keras_gblend.common import messages

VERSION = 2


def _floats(name, values, size=None):
    values = tuple(math.nan if v is None else float(v) for v in values)
    if size is not None and len(values) != size:
        raise ValueError(
            f"`{name}` must hold one value per head ({size}). Received {len(values)}."
        )
    return values


@dataclasses.dataclass(frozen=True)
class Measurement:
    """Per-head losses on `T'` and `V` measured after `epoch` completed epochs.

    Attributes:
        epoch: Epochs completed when measured (0: before training).
        train: Per-head mean loss on the training subset `T'`.
        heldout: Per-head mean loss on the held-out set `V`.
        train_sem: Per-head standard error of `train`, or None if unknown.
        heldout_sem: Per-head standard error of `heldout`, or None if unknown.

    Example:

    >>> m = Measurement(3, [0.5, 0.4], [0.7, 0.6])
    >>> m.epoch, m.train, m.heldout_sem
    (3, (0.5, 0.4), None)
    """

    epoch: int
    train: tuple
    heldout: tuple
    train_sem: tuple | None = None
    heldout_sem: tuple | None = None

    def __post_init__(self):
        size = len(self.train)
        set_ = object.__setattr__
        set_(self, "epoch", int(self.epoch))
        set_(self, "train", _floats("train", self.train))
        set_(self, "heldout", _floats("heldout", self.heldout, size))
        for name in ("train_sem", "heldout_sem"):
            if getattr(self, name) is not None:
                set_(self, name, _floats(name, getattr(self, name), size))


@dataclasses.dataclass(frozen=True)
class Estimate:
    """One G-Blend estimate made after `epoch` completed epochs.

    Attributes:
        epoch: Epochs completed when estimated; the weights apply from the next.
        status: `"ok"`, or `"fallback"` when no head generalised (the weights
            were kept as they were).
        weights: Per-head weights in force after the estimate, summing to 1
            (before any `weight_scale` of the callback).
        d_g: Per-head generalisation `dG`.
        d_o: Per-head change of overfitting `dO`.
        ogr: Per-head `|dO / dG|`.

    Example:

    >>> e = Estimate(5, "ok", [0.7, 0.3], [0.1, 0.0], [0.05, 0.2], [0.5, math.inf])
    >>> e.weights
    (0.7, 0.3)
    """

    epoch: int
    status: str
    weights: tuple
    d_g: tuple
    d_o: tuple
    ogr: tuple

    def __post_init__(self):
        size = len(self.weights)
        object.__setattr__(self, "epoch", int(self.epoch))
        for name in ("weights", "d_g", "d_o", "ogr"):
            object.__setattr__(self, name, _floats(name, getattr(self, name), size))


@dataclasses.dataclass(frozen=True)
class BlendState:
    """Everything a G-Blend run records: heads, initial weights, the records.

    Attributes:
        head_names: Head names, the fused head last (see the module doc).
        initial_weights: Per-head weights before the first estimate (summing
            to 1), or None if unknown.
        measurements: `Measurement`s in epoch order.
        estimates: `Estimate`s in epoch order.
        settings: The callback's settings (`preset`, `estimator`,
            `weight_scale`, `output`), or None if not recorded.
        output_choice: The output mode chosen on `V` when training ended
            (`{"mode", "scores", "weights"}`), or None.

    Example:

    >>> s = BlendState(("a", "fused"), (0.5, 0.5))
    >>> s = s.add(Estimate(2, "ok", [0.2, 0.8], [1, 1], [1, 1], [1, 1]))
    >>> s.current_weights, s.truncate(1).current_weights
    ((0.2, 0.8), (0.5, 0.5))
    """

    head_names: tuple
    initial_weights: tuple | None = None
    measurements: tuple = ()
    estimates: tuple = ()
    settings: dict | None = None
    output_choice: dict | None = None

    def __post_init__(self):
        object.__setattr__(self, "head_names", tuple(self.head_names))
        if self.initial_weights is not None:
            weights = _floats(
                "initial_weights", self.initial_weights, len(self.head_names)
            )
            object.__setattr__(self, "initial_weights", weights)
        object.__setattr__(self, "measurements", tuple(self.measurements))
        object.__setattr__(self, "estimates", tuple(self.estimates))

    @property
    def current_weights(self):
        """The weights in force: the last estimate's, else the initial ones."""
        return self.estimates[-1].weights if self.estimates else self.initial_weights

    def logs_at(self, epoch):
        """The log entries of `epoch` (see `LOG_KEYS`): what was measured or
        estimated after `epoch` completed epochs, then the weights in force.

        Example:

        >>> s = BlendState(("a", "fused"), (0.5, 0.5))
        >>> s.add(Measurement(1, [0.25, 0.5], [1, 1])).logs_at(1)
        {'gblend_train_loss_a': 0.25, 'gblend_train_loss_fused': 0.5, \
'gblend_heldout_loss_a': 1.0, 'gblend_heldout_loss_fused': 1.0, \
'gblend_weight_a': 0.5, 'gblend_weight_fused': 0.5}
        """
        weights = zip(self.head_names, self.current_weights)
        in_force = {log_key(IN_FORCE, h): float(w) for h, w in weights}
        values = {}
        for record in (*self.measurements, *self.estimates):
            if record.epoch == epoch:
                values.update(log_values(record, self.head_names))
        # The weights in force last, at every epoch (an estimate's are the same).
        return {k: v for k, v in values.items() if k not in in_force} | in_force

    def add(self, record):
        """Returns a new state with a `Measurement` or an `Estimate` appended.

        Raises:
            ValueError: If `record` has the wrong number of heads or is of
                another type.
        """
        values = record.train if isinstance(record, Measurement) else None
        if isinstance(record, Estimate):
            values = record.weights
        if values is None:
            raise ValueError(
                "`record` must be a Measurement or an Estimate. "
                f"Received {type(record).__name__}."
            )
        if len(values) != len(self.head_names):
            raise ValueError(
                f"`record` must hold one value per head {list(self.head_names)}. "
                f"Received {len(values)}."
            )
        field = "measurements" if isinstance(record, Measurement) else "estimates"
        return dataclasses.replace(self, **{field: getattr(self, field) + (record,)})

    def with_output(self, choice):
        """Returns a new state recording `choice` (an `inference.OutputChoice`)."""
        return dataclasses.replace(
            self,
            output_choice=dict(
                mode=choice.mode,
                scores=dict(choice.scores),
                weights=dict(choice.weights),
            ),
        )

    def truncate(self, epoch):
        """Drops the records made after `epoch` completed epochs.

        A run resumed with `fit(initial_epoch=epoch)` (e.g. by
        `keras.callbacks.BackupAndRestore`) continues from the checkpoint after
        `epoch` epochs: what was recorded later belongs to the lost part.
        """
        return dataclasses.replace(
            self,
            measurements=tuple(m for m in self.measurements if m.epoch <= epoch),
            estimates=tuple(e for e in self.estimates if e.epoch <= epoch),
        )

    def resume(self, head_names, epoch, *, path=None):
        """The state a run of `head_names`'s model resumed at `epoch` continues.

        Args:
            head_names: The heads of the resumed model.
            epoch: The epochs it completed (`fit`'s `initial_epoch`).
            path: The state file, named in the error.

        Returns:
            `truncate(epoch)`.

        Raises:
            ValueError: If this is a state of other heads.

        Example:

        >>> BlendState(("a", "fused")).resume(("b", "fused"), 2, path="s.json")
        Traceback (most recent call last):
        ...
        ValueError: `state_path` must be a state of this model's heads ['b', 'fused'], not of ['a', 'fused']. Received 's.json'.
        """  # noqa: E501
        heads, mine = list(head_names), list(self.head_names)
        expected = f"a state of this model's heads {heads}, not of {mine}"
        messages.check_argument("state_path", path, heads == mine, expected)
        return self.truncate(epoch)

    def to_dict(self):
        """The JSON-ready dict of the version-2 format (see the module doc)."""
        return {
            "version": VERSION,
            "head_names": list(self.head_names),
            "initial_weights": None
            if self.initial_weights is None
            else list(self.initial_weights),
            "measurements": [_as_lists(m) for m in self.measurements],
            "estimates": [_as_lists(e) for e in self.estimates],
            **{
                key: getattr(self, key)
                for key in ("settings", "output_choice")
                if getattr(self, key) is not None
            },
        }

    @classmethod
    def from_dict(cls, data):
        """Builds a state from `to_dict()` output (version 2).

        A file's dict of any version is read by
        `keras_gblend.blend.state_file.state_from_dict` (and `load`).

        Raises:
            ValueError: If the version is not 2 or the dict is malformed.
        """
        version = data.get("version", 1)
        if version != VERSION:
            raise ValueError(
                f"`BlendState.from_dict` reads version {VERSION}; received "
                f"version {version!r}. Read files and older dicts with "
                "keras_gblend.blend.state_file.load / state_from_dict."
            )
        try:
            return cls(
                head_names=data["head_names"],
                initial_weights=data.get("initial_weights"),
                measurements=[Measurement(**m) for m in data["measurements"]],
                estimates=[Estimate(**e) for e in data["estimates"]],
                settings=data.get("settings"),
                output_choice=data.get("output_choice"),
            )
        except (KeyError, TypeError) as error:
            raise ValueError(f"Malformed G-Blend state (version 2): {error}") from error


LOG_PREFIX = "gblend_"
# The log keys, `gblend_<quantity>_<head>` (one float per head), that the
# callback writes into `fit`'s logs (for History, CSVLogger, TensorBoard):
# quantity -> (the record that holds it, its attribute). A record's values are
# logged at the epoch it was made, except `IN_FORCE`: the weights in force,
# logged every epoch (an estimate's weights are those in force after it).
LOG_KEYS = {
    "weight": (Estimate, "weights"),
    "dG": (Estimate, "d_g"),
    "dO": (Estimate, "d_o"),
    "ogr": (Estimate, "ogr"),
    "train_loss": (Measurement, "train"),
    "heldout_loss": (Measurement, "heldout"),
}
IN_FORCE = "weight"


def log_key(quantity, head):
    """The log key of `quantity` (a key of `LOG_KEYS`) for `head`.

    Example:

    >>> log_key("dG", "fused")
    'gblend_dG_fused'
    """
    return f"{LOG_PREFIX}{quantity}_{head}"


def log_values(record, head_names):
    """The log entries of a `Measurement` or an `Estimate` (see `LOG_KEYS`).

    Args:
        record: A `Measurement` or an `Estimate`.
        head_names: The heads, in the record's order.

    Returns:
        A dict from log key to float, in `LOG_KEYS` order, then head order.

    Example:

    >>> e = Estimate(2, "ok", [0.75, 0.25], [0.5, 0.25], [0.25, 0.5], [0.5, 2.0])
    >>> log_values(e, ("a", "fused"))["gblend_dG_fused"]
    0.25
    >>> sorted(log_values(Measurement(1, [1.0], [2.0]), ("a",)))
    ['gblend_heldout_loss_a', 'gblend_train_loss_a']
    """
    return {
        log_key(quantity, head): float(value)
        for quantity, (kind, attribute) in LOG_KEYS.items()
        if isinstance(record, kind)
        for head, value in zip(head_names, getattr(record, attribute))
    }


def _as_lists(record):
    return {
        k: list(v) if isinstance(v, tuple) else v
        for k, v in dataclasses.asdict(record).items()
    }
