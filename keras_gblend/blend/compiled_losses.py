"""`T'` and `V` prepared once, and the one traced function that measures them.

`prepare` checks measurement data against the model once (modality keys,
shapes, batching, labels) and turns its batches into backend tensors once, the
last one padded to the shape of the others. `LossFunction` is one traced
(TensorFlow), jitted (JAX) or no-grad (PyTorch) prediction program per model
that returns every head's per-example loss (and probabilities) on those
batches, computed where the model runs; only the losses come back to the host.
`keras_gblend.blend.measure` measures through them (`head_loss_stats`,
`measurement`, the measurers).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import keras
import numpy as np

from keras_gblend.data import arrays


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


def head_loss_functions(model, loss):
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


def per_example_loss(loss):
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
        self.functions = [per_example_loss(losses[h]) for h in heads]
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
        self.heads, self.losses = head_loss_functions(model, loss)
        self._program = _LossModel(model, self.heads, self.losses)

    @staticmethod
    def supported(model, loss=None):
        """Whether `model` has its losses and runs on one replica (not sharded)."""
        try:
            head_loss_functions(model, loss)
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
