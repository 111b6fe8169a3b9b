"""AV-Digits: spoken digits (FSDD log-mel) paired with handwritten digits (MNIST).

Each of the 3000 Free Spoken Digit Dataset recordings is paired with an MNIST-5k
image of the same digit. The split is by speaker: clips of "theo" and "yweweler"
(1000) form the test split, the other four speakers (2000) the training split, and
the MNIST images of the two splits come from disjoint pools. So audio, whose test
speakers are never heard in training, is the modality that overfits fast.

`av_digits.npz` is built by `tools/build_av_digits.py` (see `AV_DIGITS_LICENSE.md`
for the licences and the rebuild command). It stores:

- `audio`: uint8 `(3000, 49, 32)` log-mel features, quantised; the log-mel value
  is `audio_offset + audio_scale * audio`.
- `audio_scale`, `audio_offset`: float64 scalars.
- `image`: uint8 `(3000, 28, 28)`, `mnist_index`: int32 row in `mnist_5k.csv.gz`.
- `label`, `speaker`, `take`, `split` (0 = train, 1 = test): int32 `(3000,)`.
- `speaker_names`: str `(6,)`, `feature_params`: JSON str, `version`: int32.
"""

import dataclasses
import functools
import hashlib
import os

import numpy as np

DEFAULT_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "av_digits.npz")
EXPECTED_CHECKSUM = "ccf27c5991e1a4558d8eabe9366c9c81df96f6ce1e5871fb5a8e880d6000bbb6"
SPLITS = ("train", "test", "all")
_SPLIT_CODES = {"train": 0, "test": 1}


def content_checksum(arrays):
    """Returns the SHA-256 of a dict of arrays, independent of how it was zipped.

    The digest covers, for each name in sorted order, the name, dtype, shape and
    C-ordered bytes of the array, so two files with the same content agree even
    when their zip containers differ.

    Args:
        arrays: mapping from name to array-like (e.g. an `np.load` result).

    Returns:
        The hex digest, a 64-character string.

    Example:
        >>> content_checksum({"a": np.zeros(2, np.uint8)})[:8]
        '6402e715'
    """
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{array.dtype.str}|{array.shape}\n".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


@dataclasses.dataclass(frozen=True)
class AVDigits:
    """One split of AV-Digits, ready for `model.fit(data.x, data.y)`.

    Attributes:
        x: `{"image": float32 (n, 28, 28, 1) in [0, 1], "audio": float32
            (n, 49, 32, 1)}`; audio is standardised per mel bin with the mean and
            standard deviation of the training split.
        y: int32 `(n,)` digit labels.
        speakers: int32 `(n,)` indices into `speaker_names`.
        speaker_names: tuple of the 6 speaker names.
        takes: int32 `(n,)` FSDD take numbers.
        mnist_index: int32 `(n,)` row of each image in `mnist_5k.csv.gz`.
    """

    x: dict
    y: np.ndarray
    speakers: np.ndarray
    speaker_names: tuple
    takes: np.ndarray
    mnist_index: np.ndarray


@functools.lru_cache(maxsize=4)
def _read(path):
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def _check_split(split):
    if split not in SPLITS:
        raise ValueError(f"`split` must be one of {SPLITS}. Received {split!r}.")


def load_av_digits(split="train", path=None):
    """Loads a split of AV-Digits as numpy arrays.

    Args:
        split: "train" (2000 clips, 4 speakers), "test" (1000 clips, speakers
            "theo" and "yweweler") or "all" (3000 clips, train first).
        path: the `.npz` file; defaults to the one shipped with the package.

    Returns:
        An `AVDigits` holding the split's arrays.

    Raises:
        ValueError: if `split` is not one of "train", "test", "all".

    Example:
        >>> data = load_av_digits("test")
        >>> data.x["audio"].shape, data.x["image"].shape, data.y.shape
        ((1000, 49, 32, 1), (1000, 28, 28, 1), (1000,))
    """
    _check_split(split)
    raw = _read(os.fspath(path or DEFAULT_PATH))
    codes = raw["split"]
    if split == "all":
        rows = np.concatenate([np.flatnonzero(codes == 0), np.flatnonzero(codes == 1)])
    else:
        rows = np.flatnonzero(codes == _SPLIT_CODES[split])
    audio = raw["audio_offset"] + raw["audio_scale"] * raw["audio"].astype(np.float64)
    train_audio = audio[codes == 0]
    mean = train_audio.mean(axis=(0, 1))
    std = np.maximum(train_audio.std(axis=(0, 1)), 1e-6)
    audio = ((audio[rows] - mean) / std).astype(np.float32)[..., None]
    image = (raw["image"][rows].astype(np.float32) / 255.0)[..., None]
    return AVDigits(
        x={"image": image, "audio": audio},
        y=raw["label"][rows].astype(np.int32),
        speakers=raw["speaker"][rows].astype(np.int32),
        speaker_names=tuple(str(name) for name in raw["speaker_names"]),
        takes=raw["take"][rows].astype(np.int32),
        mnist_index=raw["mnist_index"][rows].astype(np.int32),
    )


def av_digits_dataset(split="train", batch_size=32, shuffle=None, seed=None):
    """Returns AV-Digits as a batched `tf.data.Dataset` (needs TensorFlow).

    Args:
        split: "train", "test" or "all" (see `load_av_digits`).
        batch_size: positive int; the last batch may be smaller.
        shuffle: whether to shuffle the whole split each epoch; `None` shuffles
            the training split only.
        seed: shuffle seed, for a reproducible order.

    Returns:
        A dataset of `({"image": (b, 28, 28, 1), "audio": (b, 49, 32, 1)}, label)`
        with float32 inputs and int32 labels of shape `(b,)`.

    Raises:
        ValueError: if `split` is unknown or `batch_size` is not a positive int.

    Example:
        >>> inputs, labels = next(iter(av_digits_dataset("test", batch_size=4)))
        >>> inputs["audio"].shape, labels.shape
        (TensorShape([4, 49, 32, 1]), TensorShape([4]))
    """
    _check_split(split)
    if not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(
            f"`batch_size` must be a positive int. Received {batch_size!r}."
        )
    # TensorFlow only, imported here: loading the arrays needs no TensorFlow.
    from keras_gblend.data.datasets import make_dataset

    data = load_av_digits(split)
    shuffle = shuffle if shuffle is not None else split == "train"
    return make_dataset(
        data.x, data.y, batch_size=batch_size, shuffle=shuffle, seed=seed
    )
