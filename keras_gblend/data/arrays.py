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
        ValueError: If `data` is not such a pair, is empty, lengths differ, or
            the labels are strings.

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
    _check_label_dtype(name, y.dtype)
    sizes = {k: len(v) if v.ndim else -1 for k, v in x.items()}
    if y.ndim == 0 or any(s != len(y) for s in sizes.values()):
        raise ValueError(
            f"`{name}`: every modality and the labels must have the same number of "
            f"examples. Received x sizes {sizes} and {y.shape[:1] or 'scalar'} labels."
        )
    if len(y) == 0:
        raise ValueError(f"`{name}` is empty: it must hold at least one example.")
    return x, y


def _check_label_dtype(name, dtype):
    dtype = np.dtype(getattr(dtype, "as_numpy_dtype", dtype))
    if dtype.kind in "USO":
        raise ValueError(
            f"`{name}`: labels must be integer class indices (or one-hot floats). "
            f"Received labels of dtype {dtype}; map class names to indices first."
        )


def check_data(name, data):
    """Validates `(x, y)` arrays or a `tf.data.Dataset` of `(x, y)` batches.

    Args:
        name: Argument name used in error messages.
        data: `(x, y)` (see `check_pair`) or a dataset whose elements are
            `(x, y)` batches, `x` a dict keyed by modality.

    Returns:
        `data`, with arrays converted by `check_pair`.

    Raises:
        ValueError: If the pair is malformed or holds NaN or inf inputs, the
            dataset yields no labels or unbatched labels, or the labels are
            strings.

    Example:

    >>> check_data("heldout", ({"a": [[1.0]]}, ["cat"]))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: `heldout`: labels must be integer class indices (or one-hot ...
    """
    if not is_dataset(data):
        data = check_pair(name, data)
        check_finite(name, data[0])
        return data
    spec = data.element_spec
    if not (
        isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], Mapping)
    ):
        raise ValueError(
            f"`{name}` must be a dataset of (x, y) pairs, x a dict keyed by "
            f"modality: G-Blend measures losses, so it needs the labels. "
            f"Received elements {spec}."
        )
    _check_label_dtype(name, spec[1].dtype)
    if spec[1].shape.rank == 0:
        raise ValueError(
            f"`{name}` is an unbatched dataset (scalar labels per element). "
            "Call `.batch(batch_size)` on it."
        )
    return data


def check_finite(name, x, offset=0):
    """Raises if a floating input of `x` (a dict of arrays) holds NaN or inf.

    Args:
        name: Argument name used in error messages.
        x: Dict of arrays keyed by modality.
        offset: Index of the first example of `x` (for a batch of a dataset).

    Raises:
        ValueError: Naming the modality, the heads it feeds and the example.

    Example:

    >>> check_finite("heldout", {"b": np.array([[0.0], [np.nan]])})
    Traceback (most recent call last):
    ...
    ValueError: `heldout` holds NaN or inf in modality 'b' (example 1), which feeds heads ['b', 'fused']. Remove or impute those values.
    """  # noqa: E501
    for key, values in x.items():
        values = np.asarray(values)
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            bad = int(np.argwhere(~np.isfinite(values))[0][0]) + offset
            raise ValueError(
                f"`{name}` holds NaN or inf in modality {key!r} (example {bad}), "
                f"which feeds heads {[key, 'fused']}. Remove or impute those values."
            )


def check_labels(name, labels, num_classes):
    """Checks labels against a classifier with `num_classes` outputs.

    Args:
        name: Argument name used in error messages.
        labels: Class indices `(n,)` / `(n, 1)`, or one-hot `(n, num_classes)`.
        num_classes: Number of classes of the model.

    Raises:
        ValueError: If indices fall outside `[0, num_classes)` or the shape
            fits neither form.

    Example:

    >>> check_labels("heldout", np.array([0, 3]), 3)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: `heldout`: labels must be class indices in [0, 3). Received ...
    """
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == num_classes and num_classes > 1:
        return
    if labels.ndim not in (1, 2) or (labels.ndim == 2 and labels.shape[1] != 1):
        raise ValueError(
            f"`{name}`: labels must have shape (n,) or (n, 1) with class indices, "
            f"or (n, {num_classes}) one-hot. Received shape {labels.shape}."
        )
    low, high = labels.min(), labels.max()
    if low < 0 or high >= num_classes or np.any(labels != np.round(labels)):
        raise ValueError(
            f"`{name}`: labels must be class indices in [0, {num_classes}). "
            f"Received values from {low:g} to {high:g}."
        )


def check_disjoint(train_subset, heldout, warn):
    """Refuses a held-out set inside `T'`; calls `warn` if they overlap.

    Datasets are not compared (that would read them whole).

    Args:
        train_subset: `T'` as `(x, y)` arrays (or a dataset: skipped).
        heldout: `V` as `(x, y)` arrays (or a dataset: skipped).
        warn: Called with the message when some examples are shared (the
            caller chooses the warning: `keras_gblend.blend.measure.check_sets`
            raises a `GBlendWarning`).

    Raises:
        ValueError: If every example of `heldout` is in `train_subset`.

    Example:

    >>> pair = ({"m": np.arange(3.0)}, np.zeros(3))
    >>> check_disjoint(pair, pair, warn=print)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: `heldout` (V) must be held out from the training data, but ...
    """
    if is_dataset(train_subset) or is_dataset(heldout):
        return
    shared, total = count_shared(train_subset, heldout), len(heldout[1])
    if shared == total:
        raise ValueError(
            "`heldout` (V) must be held out from the training data, but every one "
            f"of its {shared} examples is also in `train_subset` (T'): the estimate "
            "would mean nothing. Split with keras_gblend.data.holdout_split."
        )
    if shared:
        warn(
            f"{shared} of the {total} examples of `heldout` (V) are also in "
            "`train_subset` (T'): V must not be trained on. Split with "
            "keras_gblend.data.holdout_split."
        )


def count_shared(data, other):
    """Number of examples of `other` whose inputs also occur in `data`.

    Examples are compared by the bytes of all their modalities, so it finds a
    held-out set that repeats training examples (or is the same set).

    Example:

    >>> a = ({"m": np.arange(4.0)}, np.zeros(4))
    >>> count_shared(a, ({"m": np.array([3.0, 7.0])}, np.zeros(2)))
    1
    """

    def rows(pair):  # A generator: `data` may be the whole training set.
        x = pair[0]
        keys = sorted(x)
        n = len(x[keys[0]])
        return (b"".join(x[k][i].tobytes() for k in keys) for i in range(n))

    if sorted(data[0]) != sorted(other[0]):
        return 0
    wanted = list(rows(other))
    lookup = set(wanted)
    found = {row for row in rows(data) if row in lookup}
    return sum(row in found for row in wanted)


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


def to_pair(data):
    """`data` as an in-memory `(x, y)` pair: a pair as it is, a batched
    `tf.data.Dataset` of `(x, y)` batches read once and concatenated.

    Example:

    >>> x, y = to_pair(({"a": np.zeros((2, 1))}, np.array([0, 1])))
    >>> x["a"].shape, y.tolist()
    ((2, 1), [0, 1])
    """
    if not is_dataset(data):
        return data
    xs, ys = [], []
    for x, y, *_ in data.as_numpy_iterator():
        xs.append(x)
        ys.append(y)
    x = {m: np.concatenate([part[m] for part in xs]) for m in xs[0]}
    return x, np.concatenate(ys)


def check_heldout_labels(labels):
    """Checks that `V`'s labels can measure generalisation: at least 2 examples
    of at least 2 classes (class indices or one-hot).

    Raises:
        ValueError: Naming `heldout` (V), what it needs and what it holds.

    Example:

    >>> check_heldout_labels(np.array([0, 1, 1]))
    >>> try:
    ...     check_heldout_labels(np.array([2, 2]))
    ... except ValueError as error:
    ...     print(str(error).split("stratifies). ")[-1])
    Received 2 examples, all of class 2.
    """
    labels = np.asarray(labels)
    one_hot = labels.ndim == 2 and labels.shape[1] > 1
    classes = labels.argmax(-1) if one_hot else labels.reshape(-1)
    found = np.unique(classes)
    if len(classes) < 2:
        raise ValueError(
            "`heldout` (V) must hold at least 2 examples: dG is a change of "
            "its mean loss (the paper holds out 8-13% of the training data). "
            "Received 1 example."
        )
    if len(found) < 2:
        raise ValueError(
            "`heldout` (V) must hold examples of at least 2 classes: a loss "
            "on one class does not measure how a head generalises "
            "(keras_gblend.data.holdout_split stratifies). Received "
            f"{len(classes)} examples, all of class {found[0]}."
        )
