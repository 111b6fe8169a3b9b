"""TFRecord files with one feature per modality: write them, read them as `tf.data`.

`write_tfrecord` stores every modality and the label of an example as a
serialized tensor, so dtypes and shapes round-trip exactly; `tfrecord_dataset`
reads the files back into the batched `({modality: x}, y)` pipeline of
`keras_gblend.data.datasets.finish`. Needs TensorFlow installed.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping

import numpy as np

from keras_gblend.common.tf_gate import require_tensorflow
from keras_gblend.data.arrays import check_pair
from keras_gblend.data.datasets import AUTOTUNE, finish

tf = require_tensorflow("keras_gblend.data.tfrecord (TFRecord files)")

LABEL_KEY = "label"


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
    x, y = check_pair("(x, y)", (x, y))
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
    label_key=LABEL_KEY,
    num_examples=None,
    cache="auto",
    **options,
):
    """A batched `tf.data.Dataset` of `({modality: x}, y)` read from TFRecord files.

    Files are read in the given order and parsed in parallel with a
    deterministic order; then `finish` caches the parsed examples (in memory
    by default, where they fit: records are read and parsed once), shuffles,
    batches and prefetches. The data set's cardinality is set to the number of
    records, so Keras knows the number of steps (with an unknown cardinality,
    Keras 3.15 warns "Your input ran out of data" after every pass, i.e. every
    epoch and every `evaluate`).

    Args:
        paths: A file path, a glob pattern, or a list of them.
        feature_spec: Dict from feature name to per-example `tf.TensorSpec`,
            as returned by `write_tfrecord`; the label under `label_key`.
        batch_size: Examples per batch.
        shuffle: Whether to shuffle the examples every epoch.
        label_key: The label's feature name.
        num_examples: Number of records in the files, if known. Default: counted
            once here, by a pass over the raw records (no parsing). A wrong
            count raises `tf.errors.FailedPreconditionError` while iterating.
        cache: "auto" (default): in memory where the parsed examples fit;
            a file name prefix caches on disk; False parses every epoch. See
            `finish`.
        **options: `seed`, `repeat`, `drop_remainder`, `shuffle_buffer`: see
            `finish`.

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
        dataset, batch_size=batch_size, shuffle=shuffle, cache=cache, **options
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
