"""Per-head losses of a model, measured in inference mode: the one way to measure.

The callback (both modes) and offline / exact estimation measure through this
module. `prepare` checks the data against the model once (modality keys, shapes,
batching, labels) and prepares it: its batches become backend tensors once, the
last one padded to the shape of the others. A measurer then measures through one
`HeadLosses`-computing program per model (`LossFunction`): each head's
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

from keras_gblend.blend import state
from keras_gblend.common import messages
from keras_gblend.data import arrays

_SYMBOLS = {"train_subset": "T'", "heldout": "V"}


class Prepared(NamedTuple):
    """Measurement data prepared once: model inputs and the labels as an array.

    `batches` holds the same examples as backend tensors, `((x, y), count)` per
    batch, every batch of one shape (the last one padded by repeating its last
    example; `count` says how many rows are real). `function` is the
    `LossFunction` that measures them, if a measurer built one.

    Example:

    >>> Prepared(inputs={"a": np.zeros((2, 1))}, labels=np.zeros(2)).labels.shape
    (2,)
    """

    inputs: object
    labels: np.ndarray
    batches: tuple = ()
    function: object = None


class HeadLosses(NamedTuple):
    """Per-output mean loss, its standard error and the number of examples.

    Example:

    >>> HeadLosses(np.array([0.5]), np.array([0.1]), 10).count
    10
    """

    mean: np.ndarray
    sem: np.ndarray
    count: int


def prepare(data, *, model=None, batch_size=256, name="data"):
    """Checks measurement data against `model` and prepares it once.

    With a model, `x` keeps only the model's input keys (an extra key is never
    fed to a branch), and the data are checked against the model: every input
    key present with a compatible shape, a batched dataset, labels that are
    class indices in `[0, num_classes)` or one-hot. On TensorFlow the inputs
    become a batched, cached `tf.data.Dataset` (no new adapter per
    measurement); a dataset of `(x, y)` batches is split into its inputs and
    its labels (read once).

    Args:
        data: `(x, y)` arrays (x a dict keyed by modality) or a batched
            `tf.data.Dataset` of such pairs.
        model: Optional model whose (dict) inputs and output the data must fit.
        batch_size: Batch size of the inputs made from arrays.
        name: Argument name used in error messages.

    Returns:
        A `Prepared(inputs, labels)`.

    Raises:
        ValueError: If `data` is malformed, empty, has string labels, no
            labels, is unbatched, or does not fit `model`.

    Example:

    >>> prepared = prepare(({"a": np.zeros((5, 2))}, np.zeros(5)), batch_size=2)
    >>> prepared.labels.shape
    (5,)
    """
    data = arrays.check_data(name, data)
    specs = getattr(model, "input", None) if model is not None else None
    keys = list(specs) if isinstance(specs, Mapping) else None
    if arrays.is_dataset(data):
        if specs is not None:
            _check_inputs(name, data.element_spec[0], specs, batched=True)
        if keys is not None:
            data = data.map(lambda x, y: ({k: x[k] for k in keys}, y))
        xs, labels = [], []
        for x, y in data.as_numpy_iterator():
            arrays.check_finite(name, x, offset=sum(len(b) for b in labels))
            xs.append(x)
            labels.append(np.asarray(y))
        if not labels:
            raise ValueError(f"`{name}` is empty: the dataset yielded no batch.")
        labels = np.concatenate(labels)
        x = keras.tree.map_structure(lambda *b: np.concatenate(b), *xs)
        inputs = data.map(lambda x, y: x).cache()
    else:
        x, labels = data
        if specs is not None:
            _check_inputs(name, x, specs, batched=False)
        inputs = {k: x[k] for k in keys} if keys is not None else x
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            inputs = tf.data.Dataset.from_tensor_slices(inputs)
            inputs = inputs.batch(batch_size).cache()
    if model is not None:
        outputs = model.output
        output = (
            next(iter(outputs.values())) if isinstance(outputs, Mapping) else outputs
        )
        arrays.check_labels(name, labels, output.shape[-1])
    if keys is not None:
        x = {k: x[k] for k in keys}
    return Prepared(inputs, labels, _batches(x, labels, batch_size))


def _batches(x, labels, batch_size):
    """`((x, y), count)` per batch as backend tensors, every batch of one shape."""
    size = min(batch_size, len(labels))
    batches = []
    for start in range(0, len(labels), size):
        count = min(size, len(labels) - start)
        # The last batch repeats its last example: one shape, one trace.
        index = np.minimum(np.arange(start, start + size), len(labels) - 1)
        batch = keras.tree.map_structure(
            lambda v, i=index: keras.ops.convert_to_tensor(np.asarray(v)[i]),
            (x, labels),
        )
        batches.append((batch, count))
    return tuple(batches)


def _check_inputs(name, x, specs, batched):
    missing = sorted(set(specs) - set(x))
    if missing:
        raise ValueError(
            f"`{name}`: x must hold every model input {sorted(specs)}. "
            f"Missing {missing}; received keys {sorted(x)}."
        )
    for key, spec in specs.items():
        expected = tuple(spec.shape[1:])
        shape = tuple(x[key].shape)[1:]
        if batched and len(shape) == len(expected) - 1:
            raise ValueError(
                f"`{name}` is an unbatched dataset: {key!r} elements have shape "
                f"{tuple(x[key].shape)}, the model expects batches of {expected}. "
                "Call `.batch(batch_size)` on it."
            )
        if len(shape) != len(expected) or any(
            e is not None and s is not None and e != s for e, s in zip(expected, shape)
        ):
            raise ValueError(
                f"`{name}`: input {key!r} must have shape (batch, *{expected}). "
                f"Received {tuple(x[key].shape)}."
            )


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
    heads, losses = _head_losses(model, loss)
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
        keras.ops.convert_to_numpy(_per_example(losses[h])(labels, predictions[h]))
        for h in heads
    ]
    return np.asarray(rows, np.float64).reshape(len(heads), len(labels))


def _head_losses(model, loss):
    """`(heads, {head: loss})`; a single-output model has the one head `None`."""
    heads = getattr(model, "head_names", None)
    losses = getattr(model, "loss", None) if loss is None else loss
    if heads is None:
        heads, losses = (None,), {None: losses}
    if not isinstance(losses, Mapping) or any(losses.get(h) is None for h in heads):
        raise ValueError(
            "`model` must be compiled with a loss per output (or `loss` given) "
            "before its losses can be measured."
        )
    return tuple(heads), dict(losses)


def _raw(data, batch_size):
    if arrays.is_dataset(data) or not isinstance(data[0], np.ndarray):
        return prepare(data, batch_size=batch_size)
    return Prepared(*data)


def _per_example(loss):
    if isinstance(loss, keras.losses.Loss):
        return loss.call  # Loss.call is the unreduced, per-example loss.
    return keras.losses.get(loss)


class _LossModel(keras.Model):
    """`(x, y)` -> every head's per-example loss `(batch, heads)` and probabilities.

    Inference mode. The probabilities (one `(batch, classes)` per head, in head
    order) come back with the losses, so choosing the output mode on `V` at the
    end of a run needs no second traced prediction.
    """

    def __init__(self, model, heads, losses):
        # No cast of the inputs: the model casts them as it does in `predict`.
        super().__init__(autocast=False, name=f"{model.name}_head_losses")
        self.measured, self.heads = model, heads
        self.functions = [_per_example(losses[h]) for h in heads]
        self.built = True  # No weights of its own: `predict_on_batch` only traces.

    def call(self, data):
        x, y = data
        predictions = self.measured(x, training=False)
        if self.heads == (None,):
            predictions = {None: predictions}
        rows = [f(y, predictions[h]) for h, f in zip(self.heads, self.functions)]
        return keras.ops.stack(rows, axis=-1), [predictions[h] for h in self.heads]


class LossFunction:
    """Every head's per-example loss on prepared data, computed where `model` runs.

    Built once per model and run (a measurer builds it in `setup`): one traced
    (TensorFlow), jitted (JAX) or no-grad (PyTorch) prediction function over
    `prepare`'s backend-tensor batches, all of one shape, so it traces once
    for every set of that batch size; only the `(batch, heads)` losses come
    back to the host. Inference mode, the model's own losses applied per
    example: the numbers of `per_example_losses`'s `model.predict` path, up to
    float32 rounding. Not for a model distributed over several replicas
    (`supported` is False; `per_example_losses` then predicts with
    `model.predict`).

    Args:
        model: A compiled `GBlendModel`, or a single-output model with `loss`.
        loss: Dict of head losses (or the one loss of a single-output model);
            default: the model's compiled ones.

    Raises:
        ValueError: If no loss is known for an output.

    Example:

    >>> import keras
    >>> inputs = {"a": keras.Input((2,), name="a")}
    >>> model = keras.Model(inputs, keras.layers.Softmax()(inputs["a"]))
    >>> data = prepare(({"a": np.zeros((3, 2), "float32")}, np.zeros(3, "int32")))
    >>> function = LossFunction(model, loss="sparse_categorical_crossentropy")
    >>> function(data).round(4)  # log 2 for each of the 3 examples
    array([[0.6931, 0.6931, 0.6931]])
    """

    def __init__(self, model, loss=None):
        self.model = model
        self.heads, self.losses = _head_losses(model, loss)
        self._program = _LossModel(model, self.heads, self.losses)

    @staticmethod
    def supported(model, loss=None):
        """Whether `model` has its losses and runs on one replica (not sharded)."""
        try:
            _head_losses(model, loss)
        except ValueError:  # `per_example_losses` says so when it measures.
            return False
        strategy = getattr(model, "distribute_strategy", None)
        if getattr(strategy, "num_replicas_in_sync", 1) > 1:
            return False
        jax = keras.backend.backend() == "jax"
        return not jax or keras.distribution.distribution() is None

    def measures(self, model, losses):
        """Whether this function measures `model` with `losses` (`{head: loss}`)."""
        return model is self.model and losses == self.losses

    def __call__(self, prepared):
        """A float64 array `(heads, examples)` of per-example losses on `prepared`."""
        return self.run(prepared)[0]

    def run(self, prepared):
        """`(losses, probabilities)`: `__call__`'s and `{head: (n, classes)}`."""
        batches = [
            (self._program.predict_on_batch(batch), count)
            for batch, count in prepared.batches
        ]
        losses = np.concatenate([loss[:count] for (loss, _), count in batches])
        probabilities = {
            h: np.concatenate([probs[i][:count] for (_, probs), count in batches])
            for i, h in enumerate(self.heads)
        }
        return losses.T.astype(np.float64), probabilities


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
    heads, losses = _head_losses(model, None)
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
    arrays.check_disjoint(train_subset, heldout, warn=messages.warn)
    return train_subset, heldout


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
