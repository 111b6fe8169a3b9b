"""Per-head losses of a `GBlendModel`, measured in inference mode."""

from __future__ import annotations

from typing import NamedTuple

import keras
import numpy as np

from keras_gblend.data import arrays


def head_losses(model, data, *, batch_size=256):
    """Mean per-example loss of every head on `data`, in inference mode.

    Predicts every head with `model.predict` (dropout off, compiled, distributed
    like the model) and applies each head's compiled loss per example, so the
    result is the exact mean over the examples whatever the batching (Keras's
    `evaluate` averages per-head losses over batches without weighting by batch
    size) and no metric of the model is touched (safe inside `fit`'s callbacks).

    Args:
        model: A compiled `GBlendModel`.
        data: `(x, y)` with `x` a dict of arrays keyed by modality and `y` the
            labels, a batched `tf.data.Dataset` of such pairs, or the result of
            `prepare`.
        batch_size: Batch size used when `data` is a tuple of arrays.

    Returns:
        A float64 array with one loss per head, in `model.head_names` order.

    Raises:
        ValueError: If `data` is malformed or empty, or the model is not
            compiled.

    Example:

    >>> import keras, numpy as np
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
    if not getattr(model, "compiled", False) or not isinstance(model.loss, dict):
        raise ValueError(
            "`model` must be a compiled GBlendModel before its head losses can be "
            "measured."
        )
    inputs, labels = data if isinstance(data, Prepared) else prepare(data, batch_size)
    if isinstance(inputs, dict):
        predictions = model.predict(inputs, batch_size=batch_size, verbose=0)
    else:
        predictions = model.predict(inputs, verbose=0)
    losses = []
    for head in model.head_names:
        per_example = _per_example_loss(model.loss[head])(labels, predictions[head])
        losses.append(
            np.mean(keras.ops.convert_to_numpy(per_example), dtype=np.float64)
        )
    return np.asarray(losses, np.float64)


def _per_example_loss(loss):
    if isinstance(loss, keras.losses.Loss):
        return loss.call  # Loss.call is the unreduced, per-example loss.
    return keras.losses.get(loss)


class Prepared(NamedTuple):
    """Measurement data prepared once: model inputs and the labels as an array.

    Example:

    >>> import numpy as np
    >>> Prepared(inputs={"a": np.zeros((2, 1))}, labels=np.zeros(2)).labels.shape
    (2,)
    """

    inputs: object
    labels: np.ndarray


def prepare(data, batch_size=256):
    """Prepares measurement data once: inputs (a cached dataset) and labels.

    Measuring the same arrays again and again with `model.predict` would build a
    new input adapter each call; on TensorFlow the inputs become a batched, cached
    `tf.data.Dataset` once. A dataset of `(x, y)` batches is split into its
    inputs and its labels (read once).

    Args:
        data: `(x, y)` arrays or a batched `tf.data.Dataset` of `(x, y)`.
        batch_size: Batch size of the inputs dataset made from arrays.

    Returns:
        A `Prepared(inputs, labels)`.

    Raises:
        ValueError: If `data` is malformed or empty.

    Example:

    >>> import numpy as np
    >>> prepared = prepare(({"a": np.zeros((5, 2))}, np.zeros(5)), batch_size=2)
    >>> prepared.labels.shape
    (5,)
    """
    if arrays.is_dataset(data):
        labels = [np.asarray(y) for _, y in data.as_numpy_iterator()]
        if not labels:
            raise ValueError("`data` is empty: the dataset yielded no batch.")
        return Prepared(data.map(lambda x, y: x).cache(), np.concatenate(labels))
    x, y = arrays.check_pair("data", data)
    if keras.backend.backend() != "tensorflow":
        return Prepared(x, y)
    import tensorflow as tf

    return Prepared(tf.data.Dataset.from_tensor_slices(x).batch(batch_size).cache(), y)
