"""Small helpers for in-memory `(x, y)` pairs, with `x` a dict keyed by modality."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def is_dataset(data):
    """Whether `data` is a `tf.data.Dataset` (without importing TensorFlow)."""
    return type(data).__module__.startswith("tensorflow") and hasattr(
        data, "element_spec"
    )


def check_pair(name, data):
    """Validates an `(x, y)` pair of a modality dict and labels; returns it.

    Args:
        name: Argument name used in error messages.
        data: `(x, y)` with `x` a non-empty dict of arrays of equal length and `y`
            an array with the same number of examples.

    Returns:
        `(x, y)` with `x` a dict of numpy arrays and `y` a numpy array.

    Raises:
        ValueError: If `data` is not such a pair, is empty, or lengths differ.

    Example:

    >>> x, y = check_pair("data", ({"a": [[1.0], [2.0]]}, [0, 1]))
    >>> x["a"].shape, y.shape
    ((2, 1), (2,))
    """
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise ValueError(
            f"`{name}` must be a pair (x, y) with x a dict keyed by modality, or a "
            f"tf.data.Dataset. Received {type(data).__name__}."
        )
    x, y = data
    if not isinstance(x, Mapping) or not x:
        raise ValueError(
            f"`{name}`: x must be a non-empty dict keyed by modality name. "
            f"Received {type(x).__name__}."
        )
    x = {k: np.asarray(v) for k, v in x.items()}
    y = np.asarray(y)
    sizes = {k: len(v) if v.ndim else -1 for k, v in x.items()}
    if y.ndim == 0 or any(s != len(y) for s in sizes.values()):
        raise ValueError(
            f"`{name}`: every modality and the labels must have the same number of "
            f"examples. Received x sizes {sizes} and {y.shape[:1] or 'scalar'} labels."
        )
    if len(y) == 0:
        raise ValueError(f"`{name}` is empty: it must hold at least one example.")
    return x, y


def take(data, indices):
    """Selects examples `indices` from an `(x, y)` pair.

    Example:

    >>> x, y = take(({"a": np.arange(4)}, np.arange(4) * 10), [1, 3])
    >>> x["a"].tolist(), y.tolist()
    ([1, 3], [10, 30])
    """
    x, y = data
    indices = np.asarray(indices, dtype=np.int64)
    return {k: np.asarray(v)[indices] for k, v in x.items()}, np.asarray(y)[indices]


def num_examples(data):
    """Number of examples in an `(x, y)` pair."""
    return len(data[1])
