"""Per-head losses of a `GBlendModel`, measured in inference mode."""

from __future__ import annotations

import keras
import numpy as np

from keras_gblend.data import arrays


def head_losses(model, data, *, batch_size=256):
    """Mean per-example loss of every head on `data`, in inference mode.

    Uses `model.evaluate`, so dropout is off, the compiled per-head losses are
    used unweighted, and the traced evaluation function is reused across calls.
    Call it between epochs (e.g. in `on_epoch_end`), not in the middle of one:
    `evaluate` resets the model's metrics.

    Args:
        model: A compiled `GBlendModel`.
        data: `(x, y)` with `x` a dict of arrays keyed by modality and `y` the
            labels, or a batched `tf.data.Dataset` of such pairs.
        batch_size: Batch size used when `data` is a tuple of arrays.

    Returns:
        A float64 array with one loss per head, in `model.head_names` order.

    Raises:
        ValueError: If `data` is empty, or the model is not compiled.

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
    if getattr(model, "compiled_loss", None) is None and not model.compiled:
        raise ValueError(
            "`model` must be compiled before its head losses can be measured."
        )
    if arrays.is_dataset(data):
        results = model.evaluate(data, verbose=0, return_dict=True)
    else:
        x, y = arrays.check_pair("data", data)
        results = model.evaluate(
            x, y, batch_size=batch_size, verbose=0, return_dict=True
        )
    missing = [f"{h}_loss" for h in model.head_names if f"{h}_loss" not in results]
    if missing:
        raise ValueError(
            f"`model.evaluate` did not report {missing}; got keys {sorted(results)}."
        )
    return np.array([results[f"{h}_loss"] for h in model.head_names], np.float64)


def as_dataset(data, batch_size=256):
    """Turns `(x, y)` arrays into a batched, cached `tf.data.Dataset`.

    Measuring the same arrays again and again with `model.evaluate` builds a new
    input adapter each call; a cached dataset is built once. Datasets are returned
    as they are, and so is everything on a backend other than TensorFlow.

    Args:
        data: `(x, y)` arrays or a `tf.data.Dataset`.
        batch_size: Batch size of the dataset.

    Returns:
        A dataset (or `data` unchanged).

    Example:

    >>> import numpy as np
    >>> ds = as_dataset(({"a": np.zeros((5, 2))}, np.zeros(5)), batch_size=2)
    >>> [int(y.shape[0]) for _, y in ds]
    [2, 2, 1]
    """
    if arrays.is_dataset(data) or keras.backend.backend() != "tensorflow":
        return data
    import tensorflow as tf

    x, y = arrays.check_pair("data", data)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size).cache()
