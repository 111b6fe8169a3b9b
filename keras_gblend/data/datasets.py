"""`tf.data` pipelines from in-memory arrays, and the steps every pipeline ends with.

Every pipeline of `keras_gblend.data` ends the same way (`finish`): decode or
parse per example (in parallel, in a deterministic order), then `cache` (so
decoding runs once; the file pipelines cache by default, in memory where the
decoded data fit, see `CACHE_MEMORY_FRACTION`), `shuffle` (after the
cache, so each epoch is shuffled anew; before `batch`, so examples, not batches,
are shuffled), `repeat`, `batch`, and `prefetch(AUTOTUNE)` last. Elements are
`(features, label)` with `features` a dict keyed by modality, which is what
`GBlendModel.fit` takes (it copies the label to every head); `to_multihead`
gives explicit per-head labels instead.

Needs TensorFlow installed (any Keras backend: Keras feeds `tf.data` to JAX and
PyTorch too). Pass `shuffle=False` to `model.fit` with these data sets (they
shuffle themselves; Keras 3.15 warns that `fit`'s own `shuffle=True` is ignored).
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from keras_gblend.common.messages import GBlendWarning
from keras_gblend.common.tf_gate import require_tensorflow
from keras_gblend.data.arrays import check_pair

tf = require_tensorflow("keras_gblend.data pipelines (tf.data input pipelines)")

AUTOTUNE = tf.data.AUTOTUNE
# `cache="auto"` caches in memory when the decoded examples take at most this
# fraction of the memory available now (MemAvailable on Linux).
CACHE_MEMORY_FRACTION = 0.5


def available_memory_bytes():
    """The memory available to new allocations now, in bytes, or None if unknown.

    Example:

    >>> available_memory_bytes() is None or available_memory_bytes() > 0
    True
    """
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def decoded_size_bytes(dataset):
    """Bytes the examples of `dataset` take once decoded, or None if unknown.

    Known when the number of examples and every component's shape are static
    (the element spec), e.g. `(49, 32)` log-mel features or images resized to
    a fixed size.

    Example:

    >>> decoded_size_bytes(tf.data.Dataset.from_tensor_slices(np.zeros((4, 3))))
    96
    """
    count = int(dataset.cardinality())
    if count < 0:
        return None
    total = 0
    for spec in tf.nest.flatten(dataset.element_spec):
        shape = getattr(spec, "shape", None)
        dtype = getattr(spec, "dtype", None)
        if shape is None or not shape.is_fully_defined() or dtype == tf.string:
            return None
        total += shape.num_elements() * dtype.size
    return count * total


def _resolve_cache(dataset, cache):
    """`cache` as True, False or a file prefix; "auto" decides by size."""
    if isinstance(cache, str) and cache == "auto":
        size, free = decoded_size_bytes(dataset), available_memory_bytes()
        if size is None or free is None or size <= CACHE_MEMORY_FRACTION * free:
            return True
        warnings.warn(
            GBlendWarning(
                f"The decoded examples take about {size / 2**20:.0f} MiB, more than "
                f"{CACHE_MEMORY_FRACTION:.0%} of the {free / 2**20:.0f} MiB of memory "
                "available, so they are not cached and are decoded again every "
                "epoch. Pass cache=<file prefix> to cache them on disk."
            ),
            stacklevel=3,
        )
        return False
    if not isinstance(cache, (bool, str, os.PathLike)):
        raise ValueError(
            '`cache` must be True, False, "auto" or a file name prefix. '
            f"Received {cache!r}."
        )
    return cache


def _check_batching(batch_size, shuffle, seed):
    if not (isinstance(batch_size, (int, np.integer)) and batch_size >= 1):
        raise ValueError(f"`batch_size` must be an int >= 1. Received {batch_size!r}.")
    if not isinstance(shuffle, bool):
        raise ValueError(f"`shuffle` must be True or False. Received {shuffle!r}.")
    if seed is not None and not isinstance(seed, (int, np.integer)):
        raise ValueError(f"`seed` must be an int or None. Received {seed!r}.")


def finish(
    dataset,
    *,
    batch_size,
    shuffle,
    seed=None,
    cache=False,
    repeat=False,
    drop_remainder=False,
    shuffle_buffer=None,
):
    """Caches, shuffles, repeats, batches and prefetches a data set of examples.

    Args:
        dataset: A `tf.data.Dataset` of single (unbatched) examples.
        batch_size: Examples per batch (>= 1).
        shuffle: Whether to shuffle examples (anew every epoch).
        seed: Shuffle seed; with a seed, the order of every epoch is
            reproducible.
        cache: False, True (cache in memory), a file name prefix (cache on
            disk), or "auto": in memory when the decoded examples are known to
            take at most `CACHE_MEMORY_FRACTION` of the available memory (or
            their size is unknown), else no cache with a `GBlendWarning` that
            suggests a file prefix. The cache sits before the shuffle, so it
            holds decoded examples and each epoch is still shuffled differently.
        repeat: Repeat forever (then pass `steps_per_epoch` to `fit`).
        drop_remainder: Drop the last, smaller batch.
        shuffle_buffer: Shuffle buffer size; default: the data set's size when
            known, else 10000.

    Returns:
        The batched, prefetched `tf.data.Dataset`.

    Raises:
        ValueError: If `batch_size`, `shuffle`, `seed` or `cache` is invalid.

    Example:

    >>> ds = finish(tf.data.Dataset.range(5), batch_size=2, shuffle=False)
    >>> [b.tolist() for b in ds.as_numpy_iterator()]
    [[0, 1], [2, 3], [4]]
    """
    _check_batching(batch_size, shuffle, seed)
    cache = _resolve_cache(dataset, cache)
    if cache:
        dataset = dataset.cache("" if cache is True else os.fspath(cache))
    if shuffle:
        if shuffle_buffer is None:
            size = int(dataset.cardinality())
            shuffle_buffer = size if size > 0 else 10_000
        dataset = dataset.shuffle(
            shuffle_buffer, seed=seed, reshuffle_each_iteration=True
        )
    if repeat:
        dataset = dataset.repeat()
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    return dataset.prefetch(AUTOTUNE)


def make_dataset(
    x,
    y,
    *,
    batch_size,
    shuffle,
    **options,
):
    """A batched `tf.data.Dataset` of `({modality: x}, y)` from in-memory arrays.

    Args:
        x: Dict from modality name to an array with one row per example.
        y: Labels, one per example.
        batch_size: Examples per batch.
        shuffle: Whether to shuffle the examples every epoch.
        **options: `seed`, `cache`, `repeat`, `drop_remainder`, `shuffle_buffer`:
            see `finish`. Arrays are already in memory: caching only pays off
            when you `map` an expensive function over the result's examples,
            so it is off by default.

    Returns:
        A `tf.data.Dataset` of `(features, labels)` batches.

    Raises:
        ValueError: If `x` is not a non-empty dict, the sizes differ, the data
            are empty (see `keras_gblend.data.check_pair`), or a batching
            argument is invalid.

    Example:

    >>> x = {"a": np.zeros((5, 2), "float32"), "b": np.ones((5, 3), "float32")}
    >>> ds = make_dataset(x, np.arange(5), batch_size=2, shuffle=True, seed=0)
    >>> features, labels = next(iter(ds))
    >>> features["a"].shape, features["b"].shape, labels.shape
    (TensorShape([2, 2]), TensorShape([2, 3]), TensorShape([2]))
    """
    x, y = check_pair("(x, y)", (x, y))
    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    return finish(dataset, batch_size=batch_size, shuffle=shuffle, **options)


def to_multihead(dataset, head_names):
    """Turns `(features, label)` elements into `(features, {head: label})`.

    `GBlendModel` copies a single label to every head itself; use this when you
    want explicit per-head labels (e.g. for a plain `keras.Model` or a custom
    `train_step`). A third element (sample weights) is kept as it is.

    Args:
        dataset: A `tf.data.Dataset` of `(features, label)` or
            `(features, label, sample_weight)`.
        head_names: The head names, e.g. `model.head_names`.

    Returns:
        A `tf.data.Dataset` of `(features, {head: label, ...}[, sample_weight])`.

    Raises:
        ValueError: If `head_names` is empty or has duplicates, or the elements
            are not 2- or 3-tuples with a single label tensor.

    Example:

    >>> ds = tf.data.Dataset.from_tensor_slices(({"a": [1.0, 2.0]}, [0, 1]))
    >>> _, labels = next(iter(to_multihead(ds, ["a", "fused"])))
    >>> sorted(labels)
    ['a', 'fused']
    """
    names = list(head_names)
    if not names or len(set(names)) != len(names):
        raise ValueError(
            f"`head_names` must be non-empty and unique. Received {names}."
        )
    spec = dataset.element_spec
    if not isinstance(spec, tuple) or len(spec) not in (2, 3):
        raise ValueError(
            "`dataset` elements must be (features, label) or (features, label, "
            f"sample_weight) tuples. Received element_spec {spec}."
        )
    if not isinstance(spec[1], tf.TensorSpec):
        raise ValueError(
            "`dataset` labels must be a single tensor (they are copied to every "
            f"head). Received label spec {spec[1]}."
        )

    def split(features, label, *rest):
        return (features, {name: label for name in names}, *rest)

    return dataset.map(split, num_parallel_calls=AUTOTUNE, deterministic=True)
