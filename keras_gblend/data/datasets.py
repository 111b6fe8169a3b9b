"""`tf.data` pipelines from in-memory arrays, and the steps every pipeline ends with.

Every pipeline of `keras_gblend.data` ends the same way (`finish`): decode or
parse per example, then `cache` (so decoding runs once), `shuffle` (after the
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

import numpy as np

from keras_gblend.data.arrays import check_pair
from keras_gblend.tf.support import require_tensorflow

tf = require_tensorflow("keras_gblend.data pipelines (tf.data input pipelines)")

AUTOTUNE = tf.data.AUTOTUNE


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
        cache: False, True (cache in memory) or a file name prefix (cache on
            disk). The cache sits before the shuffle, so it holds decoded
            examples and each epoch is still shuffled differently.
        repeat: Repeat forever (then pass `steps_per_epoch` to `fit`).
        drop_remainder: Drop the last, smaller batch.
        shuffle_buffer: Shuffle buffer size; default: the data set's size when
            known, else 10000.

    Returns:
        The batched, prefetched `tf.data.Dataset`.

    Raises:
        ValueError: If `batch_size`, `shuffle` or `seed` is invalid.

    Example:

    >>> ds = finish(tf.data.Dataset.range(5), batch_size=2, shuffle=False)
    >>> [b.tolist() for b in ds.as_numpy_iterator()]
    [[0, 1], [2, 3], [4]]
    """
    _check_batching(batch_size, shuffle, seed)
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
