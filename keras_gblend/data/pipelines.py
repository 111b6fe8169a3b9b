"""`tf.data` input pipelines for multi-modal `({modality: x}, label)` examples.

Every pipeline here ends the same way (`finish`): decode or parse per example,
then `cache` (so decoding runs once), `shuffle` (after the cache, so each epoch
is shuffled anew; before `batch`, so examples, not batches, are shuffled),
`repeat`, `batch`, and `prefetch(AUTOTUNE)` last. Elements are
`(features, label)` with `features` a dict keyed by modality, which is what
`GBlendModel.fit` takes (it copies the label to every head); `to_multihead`
gives explicit per-head labels instead.

Sources:

* In-memory arrays: `make_dataset`.
* TFRecord files with one feature per modality: `write_tfrecord` and
  `tfrecord_dataset`.
* Your own files, e.g. a folder of WAV files and a folder of images paired by
  file name: `pair_files`, then `files_dataset` with one loader per modality
  (`keras_gblend.data.audio.make_audio_map_fn()` for WAV, `image_map_fn()` for
  PNG/JPEG/BMP/GIF).

Pass `shuffle=False` to `model.fit` with these data sets (they shuffle
themselves; Keras 3.15 warns that `fit`'s own `shuffle=True` is ignored).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping

import numpy as np
import tensorflow as tf

LABEL_KEY = "label"
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


def _check_arrays(x, y):
    if not isinstance(x, Mapping) or not x:
        raise ValueError(
            "`x` must be a non-empty dict from modality name to array. "
            f"Received {type(x).__name__}."
        )
    x = {name: np.asarray(value) for name, value in x.items()}
    y = np.asarray(y)
    sizes = {name: (len(v) if v.ndim else None) for name, v in x.items()}
    num = len(y) if y.ndim else None
    if num is None or any(size != num for size in sizes.values()):
        raise ValueError(
            "Every modality in `x` and the labels `y` must have the same number "
            f"of examples. Received x sizes {sizes} and {num} labels."
        )
    if num == 0:
        raise ValueError("`x` and `y` are empty: they must hold at least 1 example.")
    return x, y


def make_dataset(
    x,
    y,
    *,
    batch_size,
    shuffle,
    seed=None,
    cache=False,
    repeat=False,
    drop_remainder=False,
):
    """A batched `tf.data.Dataset` of `({modality: x}, y)` from in-memory arrays.

    Args:
        x: Dict from modality name to an array with one row per example.
        y: Labels, one per example.
        batch_size: Examples per batch.
        shuffle: Whether to shuffle the examples every epoch.
        seed: Shuffle seed (reproducible order).
        cache: See `finish`. Arrays are already in memory: caching only pays
            off when you `map` an expensive function over the result's
            examples, so it is off by default.
        repeat: Repeat forever.
        drop_remainder: Drop the last, smaller batch.

    Returns:
        A `tf.data.Dataset` of `(features, labels)` batches.

    Raises:
        ValueError: If `x` is not a non-empty dict, the sizes differ, the data
            are empty, or a batching argument is invalid.

    Example:

    >>> x = {"a": np.zeros((5, 2), "float32"), "b": np.ones((5, 3), "float32")}
    >>> ds = make_dataset(x, np.arange(5), batch_size=2, shuffle=True, seed=0)
    >>> features, labels = next(iter(ds))
    >>> features["a"].shape, features["b"].shape, labels.shape
    (TensorShape([2, 2]), TensorShape([2, 3]), TensorShape([2]))
    """
    x, y = _check_arrays(x, y)
    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    return finish(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        seed=seed,
        cache=cache,
        repeat=repeat,
        drop_remainder=drop_remainder,
    )


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


def _bytes_feature(value):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def write_tfrecord(path, x, y, *, num_shards=1, label_key=LABEL_KEY):
    """Writes `({modality: x}, y)` arrays to TFRecord files, one feature per modality.

    Each example is a `tf.train.Example` whose features are the modalities and
    the label, each stored as a serialized tensor (`tf.io.serialize_tensor`), so
    dtypes and shapes round-trip exactly (uint8 images stay uint8).

    Args:
        path: Output file. With `num_shards > 1`, example `i` goes to
            `f"{path}-{i % num_shards:05d}-of-{num_shards:05d}"` (one file per
            worker lets `MultiWorkerMirroredStrategy` shard by file).
        x: Dict from modality name to an array with one row per example.
        y: Labels, one per example.
        num_shards: Number of files (>= 1).
        label_key: Feature name of the label; must not be a modality name.

    Returns:
        `(paths, feature_spec)`: the files written, and the dict from feature
        name to per-example `tf.TensorSpec` to pass to `tfrecord_dataset`.

    Raises:
        ValueError: If the arrays are malformed, `num_shards < 1`, or
            `label_key` clashes with a modality.
        OSError: If a file cannot be written (the message names it).

    Example:

    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "train.tfrecord")
    >>> x = {"a": np.zeros((3, 2), "float32"), "b": np.ones((3, 4), "uint8")}
    >>> paths, spec = write_tfrecord(path, x, [0, 1, 2])
    >>> spec["b"]
    TensorSpec(shape=(4,), dtype=tf.uint8, name=None)
    """
    x, y = _check_arrays(x, y)
    if not (isinstance(num_shards, (int, np.integer)) and num_shards >= 1):
        raise ValueError(f"`num_shards` must be an int >= 1. Received {num_shards!r}.")
    if label_key in x:
        raise ValueError(
            f"`label_key` {label_key!r} clashes with a modality of `x` "
            f"({sorted(x)}); pass another label_key."
        )
    path = os.fspath(path)
    if num_shards == 1:
        paths = [path]
    else:
        paths = [f"{path}-{i:05d}-of-{num_shards:05d}" for i in range(num_shards)]
    columns = {**x, label_key: y}
    spec = {
        name: tf.TensorSpec(v.shape[1:], tf.as_dtype(v.dtype))
        for name, v in columns.items()
    }
    writers = []
    try:
        for shard in paths:
            try:
                writers.append(tf.io.TFRecordWriter(shard))
            except (tf.errors.OpError, OSError) as error:
                raise OSError(
                    f"Cannot write TFRecord file {shard!r}: {error}"
                ) from error
        for i in range(len(y)):
            example = tf.train.Example(
                features=tf.train.Features(
                    feature={
                        name: _bytes_feature(tf.io.serialize_tensor(values[i]).numpy())
                        for name, values in columns.items()
                    }
                )
            )
            writers[i % num_shards].write(example.SerializeToString())
    finally:
        for writer in writers:
            writer.close()
    return paths, spec


def _check_spec(feature_spec, label_key):
    if not isinstance(feature_spec, Mapping) or label_key not in feature_spec:
        received = sorted(feature_spec) if isinstance(feature_spec, Mapping) else None
        raise ValueError(
            "`feature_spec` must be a dict from feature name to tf.TensorSpec (or "
            f"(shape, dtype)) that includes the label {label_key!r}. "
            f"Received keys {received}."
        )
    if len(feature_spec) < 2:
        raise ValueError(
            "`feature_spec` must name at least one modality besides the label. "
            f"Received {sorted(feature_spec)}."
        )
    spec = {}
    for name, value in feature_spec.items():
        if not isinstance(value, tf.TensorSpec):
            try:
                shape, dtype = value
                value = tf.TensorSpec(shape, tf.as_dtype(dtype))
            except (TypeError, ValueError) as error:
                raise ValueError(
                    f"`feature_spec[{name!r}]` must be a tf.TensorSpec or a "
                    f"(shape, dtype) pair. Received {value!r}."
                ) from error
        spec[name] = value
    return spec


def parse_example_fn(feature_spec, *, label_key=LABEL_KEY):
    """Returns a function from a serialized example to `(features, label)`.

    The inverse of `write_tfrecord` for one record. It runs eagerly and inside
    `Dataset.map`.

    Args:
        feature_spec: Dict from feature name to per-example `tf.TensorSpec` (or
            `(shape, dtype)`), as returned by `write_tfrecord`.
        label_key: The label's feature name.

    Returns:
        A function `serialized -> ({modality: tensor}, label)`.

    Raises:
        ValueError: If `feature_spec` is malformed or lacks the label.
        tf.errors.InvalidArgumentError: When called on a record that lacks a
            feature or stores another dtype ("Type mismatch") or shape.

    Example:

    >>> spec = {"a": tf.TensorSpec([2], tf.float32), "label": ((), "int64")}
    >>> parse = parse_example_fn(spec)
    """
    spec = _check_spec(feature_spec, label_key)
    raw = {name: tf.io.FixedLenFeature([], tf.string) for name in spec}

    def parse(serialized):
        parsed = tf.io.parse_single_example(serialized, raw)
        # Ops named after the feature, so a mismatch names it: "{{node
        # parse_feature_a}}" for a dtype, "{{node check_shape_a}}" for a shape.
        tensors = {
            name: tf.ensure_shape(
                tf.io.parse_tensor(
                    parsed[name], out_type=s.dtype, name=f"parse_feature_{name}"
                ),
                s.shape,
                name=f"check_shape_{name}",
            )
            for name, s in spec.items()
        }
        label = tensors.pop(label_key)
        return tensors, label

    return parse


def tfrecord_dataset(
    paths,
    feature_spec,
    *,
    batch_size,
    shuffle,
    seed=None,
    cache=False,
    repeat=False,
    drop_remainder=False,
    label_key=LABEL_KEY,
    num_examples=None,
):
    """A batched `tf.data.Dataset` of `({modality: x}, y)` read from TFRecord files.

    Files are read in the given order and parsed in parallel with a
    deterministic order; then `finish` caches (decoded examples), shuffles,
    batches and prefetches. The data set's cardinality is set to the number of
    records, so Keras knows the number of steps (with an unknown cardinality,
    Keras 3.15 warns "Your input ran out of data" after every pass, i.e. every
    epoch and every `evaluate`).

    Args:
        paths: A file path, a glob pattern, or a list of them.
        feature_spec: Dict from feature name to per-example `tf.TensorSpec`,
            as returned by `write_tfrecord`; the label under `label_key`.
        batch_size, shuffle, seed, cache, repeat, drop_remainder: See `finish`.
        label_key: The label's feature name.
        num_examples: Number of records in the files, if known. Default: counted
            once here, by a pass over the raw records (no parsing). A wrong
            count raises `tf.errors.FailedPreconditionError` while iterating.

    Returns:
        A `tf.data.Dataset` of `(features, labels)` batches.

    Raises:
        ValueError: If no file matches `paths`, the files hold no record, or
            `feature_spec` is malformed.
        tf.errors.InvalidArgumentError: While iterating, for records that do
            not match `feature_spec`.

    Example:

    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "train.tfrecord")
    >>> x = {"a": np.zeros((3, 2), "float32"), "b": np.ones((3, 4), "float32")}
    >>> paths, spec = write_tfrecord(path, x, [0, 1, 2])
    >>> ds = tfrecord_dataset(paths, spec, batch_size=2, shuffle=False)
    >>> [labels.tolist() for _, labels in ds.as_numpy_iterator()]
    [[0, 1], [2]]
    """
    files = _expand_paths(paths)
    parse = parse_example_fn(feature_spec, label_key=label_key)
    records = tf.data.TFRecordDataset(files)
    if num_examples is None:
        num_examples = int(records.reduce(np.int64(0), lambda count, _: count + 1))
    if not (isinstance(num_examples, (int, np.integer)) and num_examples >= 1):
        raise ValueError(
            "`num_examples` must be an int >= 1 (the files must hold at least one "
            f"record). Received {num_examples!r} for files {files}."
        )
    dataset = records.apply(tf.data.experimental.assert_cardinality(num_examples))
    dataset = dataset.map(parse, num_parallel_calls=AUTOTUNE, deterministic=True)
    return finish(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        seed=seed,
        cache=cache,
        repeat=repeat,
        drop_remainder=drop_remainder,
    )


def _expand_paths(paths):
    patterns = [os.fspath(paths)] if isinstance(paths, (str, os.PathLike)) else paths
    files = []
    for pattern in patterns:
        pattern = os.fspath(pattern)
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        files.extend(m for m in matches if os.path.isfile(m))
    if not files:
        raise ValueError(
            f"`paths` matched no file. Received {paths!r} (working directory "
            f"{os.getcwd()!r})."
        )
    return files


def image_map_fn(*, channels=1, size=None, dtype=tf.float32):
    """Returns a `Dataset.map` function from an image path to a scaled image.

    Decodes PNG, JPEG, BMP or GIF (first frame) with `tf.io.decode_image`,
    converts to `dtype` in `[0, 1]` and optionally resizes (bilinear).

    Args:
        channels: Output channels (1 grey, 3 RGB).
        size: Optional `(height, width)`; without it every image must already
            have the same size for batching.
        dtype: A floating dtype.

    Returns:
        A function `path -> image` of shape `(height, width, channels)`.

    Raises:
        ValueError: If `channels` is not 1, 3 or 4, or `dtype` is not floating.

    Example:

    >>> load = image_map_fn(channels=1, size=(28, 28))
    """
    if channels not in (1, 3, 4):
        raise ValueError(f"`channels` must be 1, 3 or 4. Received {channels!r}.")
    dtype = tf.as_dtype(dtype)
    if not dtype.is_floating:
        raise ValueError(f"`dtype` must be a floating dtype. Received {dtype.name}.")

    def load(path):
        image = tf.io.decode_image(
            tf.io.read_file(path), channels=channels, expand_animations=False
        )
        image = tf.image.convert_image_dtype(image, dtype)
        if size is not None:
            image = tf.cast(tf.image.resize(image, size), dtype)
        return image

    return load


def pair_files(patterns):
    """Pairs files of several modalities by file name without extension.

    For a layout like `data/audio/7_theo_12.wav` + `data/image/7_theo_12.png`:
    `pair_files({"audio": "data/audio/*.wav", "image": "data/image/*.png"})`.

    Args:
        patterns: Dict from modality name to a glob pattern.

    Returns:
        `(stems, paths)`: the sorted file stems present for every modality, and
        a dict from modality to the list of paths in that order.

    Raises:
        ValueError: If a pattern matches nothing, or a stem is missing from
            some modality (the message lists up to 5 per modality).

    Example:

    >>> stems, paths = pair_files({"audio": "tests/fixtures/wav/*.wav",
    ...                            "again": "tests/fixtures/wav/*.wav"})
    >>> stems[0]
    '0_george_0'
    """
    if not isinstance(patterns, Mapping) or not patterns:
        raise ValueError(
            "`patterns` must be a non-empty dict from modality to glob pattern. "
            f"Received {patterns!r}."
        )
    found = {}
    for modality, pattern in patterns.items():
        files = sorted(glob.glob(os.fspath(pattern)))
        if not files:
            raise ValueError(f"`patterns[{modality!r}]` = {pattern!r} matched no file.")
        found[modality] = {os.path.splitext(os.path.basename(f))[0]: f for f in files}
    common = set.intersection(*(set(f) for f in found.values()))
    missing = {
        modality: sorted(set(files) - common)[:5]
        for modality, files in found.items()
        if set(files) - common
    }
    if missing:
        raise ValueError(
            "Every file must have a partner with the same name in every modality. "
            f"Unpaired (first 5 per modality): {missing}."
        )
    stems = sorted(common)
    return stems, {m: [files[s] for s in stems] for m, files in found.items()}


def files_dataset(
    paths,
    y,
    loaders,
    *,
    batch_size,
    shuffle,
    seed=None,
    cache=True,
    repeat=False,
    drop_remainder=False,
):
    """A batched `tf.data.Dataset` that loads each modality from its own files.

    Example `i` is `({m: loaders[m](paths[m][i])}, y[i])`. Loading runs in
    parallel, in a deterministic order; decoded examples are cached (in memory
    by default) before the shuffle, so files are read once.

    Args:
        paths: Dict from modality to a list of file paths, one per example (see
            `pair_files`).
        y: Labels, one per example.
        loaders: Dict from modality to a function `path -> tensor`, e.g.
            `{"audio": audio.make_audio_map_fn(), "image": image_map_fn()}`.
        batch_size, shuffle, seed, cache, repeat, drop_remainder: See `finish`.

    Returns:
        A `tf.data.Dataset` of `(features, labels)` batches.

    Raises:
        ValueError: If `paths` and `loaders` name different modalities, or the
            numbers of paths and labels differ.

    Example:

    >>> from keras_gblend.data import audio
    >>> stems, paths = pair_files({"audio": "tests/fixtures/wav/*.wav"})
    >>> ds = files_dataset(paths, [0, 1, 3, 7],
    ...                    {"audio": audio.make_audio_map_fn()},
    ...                    batch_size=2, shuffle=False)
    >>> next(iter(ds))[0]["audio"].shape
    TensorShape([2, 49, 32])
    """
    if not isinstance(loaders, Mapping) or not isinstance(paths, Mapping):
        raise ValueError(
            "`paths` and `loaders` must be dicts keyed by modality. Received "
            f"{type(paths).__name__} and {type(loaders).__name__}."
        )
    if set(paths) != set(loaders):
        raise ValueError(
            "`paths` and `loaders` must have the same modality keys. Received "
            f"{sorted(paths)} and {sorted(loaders)}."
        )
    paths = {
        m: np.asarray([os.fspath(p) for p in v], dtype=str) for m, v in paths.items()
    }
    paths, y = _check_arrays(paths, y)

    def load(files, label):
        return {m: loaders[m](files[m]) for m in loaders}, label

    dataset = tf.data.Dataset.from_tensor_slices((paths, y)).map(
        load, num_parallel_calls=AUTOTUNE, deterministic=True
    )
    return finish(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        seed=seed,
        cache=cache,
        repeat=repeat,
        drop_remainder=drop_remainder,
    )
