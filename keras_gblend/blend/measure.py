"""Per-head losses of a model, measured in inference mode: the one way to measure.

The callback (both modes) and offline / exact estimation measure through this
module. `prepare` (`keras_gblend.blend.compiled_losses`) checks the data against
the model once (modality keys, shapes, batching, labels) and prepares it: its
batches become backend tensors once, the last one padded to the shape of the
others. A measurer then measures through one program per model
(`compiled_losses.LossFunction`): each head's
per-example loss computed where the model runs, in inference mode (dropout off),
by one traced prediction function that is called once per batch and returns only
the losses to the host. Without one (or for a model distributed over several
replicas), `head_loss_stats` predicts every output with `model.predict`
(distributed like the model) and applies each output's loss per example. Both
give the exact mean over the examples and its standard error, the same numbers
up to float32 rounding. No metric of the model is touched: safe inside `fit`.

`GBlendCallback` measures through a measurer: `InSituMeasurer` here (in-situ
mode) or `keras_gblend.blend.head_copies.HeadCopies` (exact mode). A measurer
is built from its arguments, which it checks (raising before `fit`), and has:

* `train_subset`, `heldout`: the checked `T'` and `V`;
* `setup(model)`: when `fit` starts, checks and prepares what needs the model;
* `measurements(model, epoch)`: the `state.Measurement`s an estimate after
  `epoch` completed epochs is made from;
* `heldout_probabilities(model)`: `(probabilities, labels)` of `model`'s heads
  on `V` (`head_probabilities`), from which the callback chooses the output
  mode at the end of a run;
* `recorded`: True if each call measures the model itself once: the callback
  records every measurement and estimates from the record, so the first one is
  the reference, taken before training with no warm-up. False if each call
  returns a complete series of its own (exact mode's before and after
  training the copies), estimated alone and not recorded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import keras
import numpy as np

from keras_gblend.blend import compiled_losses, state
from keras_gblend.blend.compiled_losses import LossFunction, Prepared, prepare
from keras_gblend.common import messages
from keras_gblend.data import arrays

_SYMBOLS = {"train_subset": "T'", "heldout": "V"}


class HeadLosses(NamedTuple):
    """Per-output mean loss, its standard error and the number of examples.

    Example:

    >>> HeadLosses(np.array([0.5]), np.array([0.1]), 10).count
    10
    """

    mean: np.ndarray
    sem: np.ndarray
    count: int


def per_example_losses(model, data, *, loss=None, batch_size=256):
    """Per-example loss of every output of `model` on `data`, in inference mode.

    Args:
        model: A compiled `GBlendModel` (one row per head, its compiled loss per
            head), or a single-output model (one row; `loss` or its compiled
            loss).
        data: `(x, y)` arrays, a batched `tf.data.Dataset`, or `prepare`'s
            result.
        loss: The loss of a single-output model; default: its compiled loss.
        batch_size: Batch size of the prediction from arrays.

    Returns:
        A float64 array `(num_outputs, num_examples)`.

    Raises:
        ValueError: If no loss is known for an output, or `data` is malformed.

    Example:

    >>> import keras
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Softmax()])
    >>> x, y = {"x": np.zeros((4, 2), "float32")}, np.zeros(4, "int32")
    >>> losses = per_example_losses(
    ...     model, (x["x"], y), loss="sparse_categorical_crossentropy")
    >>> losses.shape, round(float(losses[0, 0]), 4)  # log 2
    ((1, 4), 0.6931)
    """
    prepared = data if isinstance(data, Prepared) else _raw(data, batch_size)
    heads, losses = compiled_losses.head_loss_functions(model, loss)
    if prepared.function is not None and prepared.function.measures(model, losses):
        return prepared.function(prepared)
    inputs, labels = prepared.inputs, prepared.labels
    if isinstance(inputs, Mapping) or isinstance(inputs, np.ndarray):
        predictions = model.predict(inputs, batch_size=batch_size, verbose=0)
    else:
        predictions = model.predict(inputs, verbose=0)
    if heads == (None,):
        predictions = {None: predictions}
    rows = [
        keras.ops.convert_to_numpy(
            compiled_losses.per_example_loss(losses[h])(labels, predictions[h])
        )
        for h in heads
    ]
    return np.asarray(rows, np.float64).reshape(len(heads), len(labels))


def _raw(data, batch_size):
    if arrays.is_dataset(data) or not isinstance(data[0], np.ndarray):
        return prepare(data, batch_size=batch_size)
    return Prepared(*data)


def head_probabilities(model, data, *, batch_size=256):
    """Every head's class probabilities on `data`, in inference mode.

    Through `data.function` where it measures `model` (no second traced
    prediction), else `model.predict`.

    Args:
        model: A compiled `GBlendModel`.
        data: `prepare`'s result (or what `per_example_losses` takes).
        batch_size: Batch size of the prediction from arrays.

    Returns:
        A dict from head name to a numpy `(examples, classes)` array, in the
        model's head order.

    Example:

    >>> from keras_gblend import build_gblend_model, data
    >>> from keras_gblend.model import encoders
    >>> ds = data.make_synthetic(num_train=16, num_test=4, dim_b=4)
    >>> branches = {m: encoders.mlp_encoder(x.shape[1:], units=(4,))
    ...             for m, x in ds.train[0].items()}
    >>> model = build_gblend_model(branches, num_classes=ds.num_classes)
    >>> model.compile(loss="sparse_categorical_crossentropy")
    >>> t, v = prepare_sets(model, {"train_subset": ds.train, "heldout": ds.test})
    >>> {h: p.shape for h, p in head_probabilities(model, v).items()}
    {'a': (4, 4), 'b': (4, 4), 'fused': (4, 4)}
    """
    prepared = data if isinstance(data, Prepared) else _raw(data, batch_size)
    heads, losses = compiled_losses.head_loss_functions(model, None)
    if prepared.function is not None and prepared.function.measures(model, losses):
        return prepared.function.run(prepared)[1]
    inputs = prepared.inputs
    if isinstance(inputs, Mapping) or isinstance(inputs, np.ndarray):
        predictions = model.predict(inputs, batch_size=batch_size, verbose=0)
    else:
        predictions = model.predict(inputs, verbose=0)
    return {h: np.asarray(predictions[h]) for h in heads}


def head_loss_stats(model, data, *, loss=None, batch_size=256):
    """Mean and standard error of every output's per-example loss.

    Args:
        model: See `per_example_losses`.
        data: See `per_example_losses`.
        loss: See `per_example_losses`.
        batch_size: See `per_example_losses`.

    Returns:
        A `HeadLosses`: float64 `mean` and `sem` (`std / sqrt(n)`, NaN with one
        example), one entry per output, and the example `count`.

    Example:

    >>> import keras
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Softmax()])
    >>> stats = head_loss_stats(model, (np.zeros((4, 2)), np.zeros(4, "int32")),
    ...                         loss="sparse_categorical_crossentropy")
    >>> stats.mean.round(4), stats.sem, stats.count
    (array([0.6931]), array([0.]), 4)
    """
    losses = per_example_losses(model, data, loss=loss, batch_size=batch_size)
    count = losses.shape[1]
    sem = np.full(len(losses), np.nan)
    if count > 1:
        sem = losses.std(axis=1, ddof=1) / np.sqrt(count)
    return HeadLosses(losses.mean(axis=1), sem, count)


def head_losses(model, data, *, batch_size=256):
    """Mean per-example loss of every head on `data` (see `head_loss_stats`).

    Example:

    >>> import keras
    >>> from keras_gblend import build_gblend_model
    >>> branches = {
    ...     n: keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    ...     for n in ("a", "b")
    ... }
    >>> model = build_gblend_model(branches, num_classes=2)
    >>> model.compile(loss="sparse_categorical_crossentropy")
    >>> x = {"a": np.ones((6, 4), "float32"), "b": np.ones((6, 4), "float32")}
    >>> head_losses(model, (x, np.zeros(6, "int32"))).shape
    (3,)
    """
    return head_loss_stats(model, data, batch_size=batch_size).mean


def measurement(model, data, *, epoch, loss=None, batch_size=256):
    """Measures every head on `T'` and `V`: one `state.Measurement`.

    Args:
        model: A `GBlendModel` (see `per_example_losses`).
        data: `(train_subset, heldout)`, each as `per_example_losses` takes it
            (best: `prepare`'s result).
        epoch: Epochs completed by `model` (recorded in the measurement).
        loss: Dict of head losses; default: the model's compiled ones.
        batch_size: Batch size of the prediction from arrays.

    Returns:
        A `state.Measurement` with per-head means and standard errors.

    Raises:
        ValueError: If a measured loss is NaN or infinite, naming the set
            (`train_subset` / T' or `heldout` / V) and the heads.

    Example:

    >>> from keras_gblend import build_gblend_model, data
    >>> from keras_gblend.model import encoders
    >>> ds = data.make_synthetic(num_train=16, num_test=4, dim_b=4)
    >>> encoders_ = {m: encoders.mlp_encoder(x.shape[1:], units=(4,))
    ...              for m, x in ds.train[0].items()}
    >>> model = build_gblend_model(encoders_, num_classes=ds.num_classes)
    >>> model.compile(loss="sparse_categorical_crossentropy")
    >>> m = measurement(model, [ds.train, ds.test], epoch=0)
    >>> m.epoch, len(m.train), len(m.heldout_sem)
    (0, 3, 3)
    """
    stats = [head_loss_stats(model, d, loss=loss, batch_size=batch_size) for d in data]
    for name, values in zip(_SYMBOLS, (s.mean for s in stats)):
        bad = [h for h, v in zip(model.head_names, values) if not np.isfinite(v)]
        if bad:
            raise ValueError(
                f"G-Blend measured a non-finite loss on `{name}` ({_SYMBOLS[name]}) "
                f"for head(s) {bad} at epoch {epoch}: check `{name}` for NaN or "
                "inf inputs."
            )
    t, v = stats
    return state.Measurement(epoch, t.mean, v.mean, t.sem, v.sem)


def prepare_sets(model, sets, *, batch_size=256, loss=None):
    """`T'` and `V` prepared for `model`, measured by one `LossFunction`.

    What a measurer's `setup` does: `prepare` each set against `model`, build
    one `LossFunction` for both (where `LossFunction.supported`), and check
    that `V` can be measured.

    Args:
        model: The model measured (see `per_example_losses`).
        sets: `{"train_subset": T', "heldout": V}`, in that order.
        batch_size: Batch size of the measurements.
        loss: See `LossFunction`.

    Returns:
        `[T', V]` as `Prepared`s sharing one `function`.

    Raises:
        ValueError: See `prepare` and `keras_gblend.data.arrays.check_heldout_labels`.

    Example:

    >>> import keras
    >>> inputs = {"a": keras.Input((2,), name="a")}
    >>> model = keras.Model(inputs, keras.layers.Softmax()(inputs["a"]))
    >>> pair = ({"a": np.zeros((4, 2), "float32")}, np.array([0, 1, 0, 1]))
    >>> t, v = prepare_sets(model, {"train_subset": pair, "heldout": pair},
    ...                     loss="sparse_categorical_crossentropy")
    >>> t.function is v.function, len(t.batches)
    (True, 1)
    """
    prepared = [
        prepare(d, model=model, batch_size=batch_size, name=n) for n, d in sets.items()
    ]
    arrays.check_heldout_labels(prepared[1].labels)  # Read from a dataset too.
    if not LossFunction.supported(model, loss):
        return prepared
    function = LossFunction(model, loss)
    return [p._replace(function=function) for p in prepared]


def check_sets(train_subset, heldout):
    """Checks `T'` and `V`, what every measurer measures on.

    Args:
        train_subset: `T'`: `(x, y)` arrays or a batched `tf.data.Dataset`.
        heldout: `V`, same forms, disjoint from `T'`.

    Returns:
        `(train_subset, heldout)`, checked (see `keras_gblend.data.arrays.check_data`).

    Raises:
        ValueError: If either is malformed or empty, or `V` is `T'`.

    Warns:
        GBlendWarning: When `V` shares examples with `T'`.

    Example:

    >>> pair = lambda v: ({"m": np.full((2, 1), v)}, np.array([0, 1]))
    >>> train_subset, heldout = check_sets(pair(0.0), pair(1.0))
    >>> heldout[1].tolist()
    [0, 1]
    """
    train_subset = arrays.check_data("train_subset", train_subset)
    heldout = arrays.check_data("heldout", heldout)
    arrays.check_disjoint(train_subset, heldout, warn=_warn)
    return train_subset, heldout


def _warn(text):
    messages.warn(messages.GBlendWarning(text))


class InSituMeasurer:
    """In-situ mode's measurer: the model's own heads on `T'` and `V`.

    A measurer (see the module doc): `measurements(model, epoch)` measures the
    main model once, in inference mode; the callback records each measurement
    and estimates from the record (`recorded`).

    Args:
        train_subset: `T'`: `(x, y)` arrays or a batched `tf.data.Dataset`.
        heldout: `V`, same forms.
        batch_size: Batch size of the measurements when data are arrays.

    Raises:
        ValueError: See `check_sets`; in `setup`, data that do not fit the
            model (see `prepare`) and a `V` too small to measure (see
            `keras_gblend.data.arrays.check_heldout_labels`).

    Example:

    >>> from keras_gblend import build_gblend_model, data
    >>> from keras_gblend.model import encoders
    >>> ds = data.make_synthetic(num_train=16, num_test=4, dim_b=4)
    >>> branches = {m: encoders.mlp_encoder(x.shape[1:], units=(4,))
    ...             for m, x in ds.train[0].items()}
    >>> model = build_gblend_model(branches, num_classes=ds.num_classes)
    >>> model.compile(loss="sparse_categorical_crossentropy")
    >>> measurer = InSituMeasurer(ds.train, ds.test)
    >>> measurer.setup(model)
    >>> [(m.epoch, len(m.heldout)) for m in measurer.measurements(model, 0)]
    [(0, 3)]
    """

    recorded = True

    def __init__(self, train_subset, heldout, *, batch_size=256):
        self.train_subset, self.heldout = check_sets(train_subset, heldout)
        self.batch_size = batch_size
        self._data = None

    def setup(self, model):
        """Checks `T'` and `V` against `model` and prepares them once."""
        sets = {"train_subset": self.train_subset, "heldout": self.heldout}
        self._data = prepare_sets(model, sets, batch_size=self.batch_size)

    def measurements(self, model, epoch):
        """`[measurement]` of `model` after `epoch` completed epochs."""
        return [measurement(model, self._data, epoch=epoch, batch_size=self.batch_size)]

    def heldout_probabilities(self, model):
        """`(probabilities, labels)` on `V` (see `head_probabilities`)."""
        heldout = self._data[1]
        return head_probabilities(model, heldout, batch_size=self.batch_size), (
            heldout.labels
        )
