"""`tf.data` pipelines that load each modality from its own files.

For a folder of WAV files and a folder of images paired by file name:
`pair_files`, then `files_dataset` with one loader per modality
(`keras_gblend.data.audio.make_audio_map_fn()` for WAV, `image_map_fn()` for
PNG/JPEG/BMP/GIF). Needs TensorFlow installed.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping

import numpy as np

from keras_gblend.common.tf_gate import require_tensorflow
from keras_gblend.data.arrays import check_pair
from keras_gblend.data.datasets import AUTOTUNE, finish

tf = require_tensorflow("keras_gblend.data.files (tf.data file loaders)")


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
    cache="auto",
    **options,
):
    """A batched `tf.data.Dataset` that loads each modality from its own files.

    Example `i` is `({m: loaders[m](paths[m][i])}, y[i])`. Loading runs in
    parallel, in a deterministic order; decoded examples are cached before the
    shuffle (in memory by default, where they fit), so each file is read and
    decoded once, in the first epoch, and later epochs read the cache.

    Args:
        paths: Dict from modality to a list of file paths, one per example (see
            `pair_files`).
        y: Labels, one per example.
        loaders: Dict from modality to a function `path -> tensor`, e.g.
            `{"audio": audio.make_audio_map_fn(), "image": image_map_fn()}`.
        batch_size: Examples per batch.
        shuffle: Whether to shuffle the examples every epoch.
        cache: "auto" (default): in memory where the decoded examples fit (see
            `finish`); a file name prefix caches on disk, for data larger than
            memory; False decodes every epoch (e.g. for random augmentation
            inside a loader).
        **options: `seed`, `repeat`, `drop_remainder`, `shuffle_buffer`: see
            `finish`.

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
    paths, y = check_pair("(paths, y)", (paths, y))

    def load(files, label):
        return {m: loaders[m](files[m]) for m in loaders}, label

    dataset = tf.data.Dataset.from_tensor_slices((paths, y)).map(
        load, num_parallel_calls=AUTOTUNE, deterministic=True
    )
    return finish(
        dataset, batch_size=batch_size, shuffle=shuffle, cache=cache, **options
    )
