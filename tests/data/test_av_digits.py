"""Tests for the AV-Digits loader and its builder, tools/build_av_digits.py."""

import functools
import gzip
import os
import pathlib

import numpy as np
import pytest
import tensorflow as tf

from keras_gblend.data import av_digits
from tests.helpers import tool

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
# The raw data are not in this repository: GBLEND_RAW_DATA names their folder
# (default: the builder's default, ../shared/data next to the checkout).
RAW_DIR = pathlib.Path(
    os.environ.get("GBLEND_RAW_DATA", REPO_ROOT / ".." / "shared" / "data")
).resolve()
needs_raw = pytest.mark.skipif(
    not (RAW_DIR / "fsdd" / "recordings").is_dir(),
    reason=(
        "needs the raw FSDD recordings and MNIST-5k CSV, which are not in this "
        "repository: get them as tools/build_av_digits.py's RAW_DATA_HELP says, "
        "then set GBLEND_RAW_DATA=<raw_dir>"
    ),
)
TEST_SPEAKERS = {"theo", "yweweler"}


@functools.cache
def _mnist_labels():
    with gzip.open(RAW_DIR / "mnist5k" / "mnist_5k.csv.gz", "rt") as f:
        return np.array([int(line.rsplit(",", 1)[1]) for line in f])


def test_committed_file_is_small_and_matches_checksum():
    assert os.path.getsize(av_digits.DEFAULT_PATH) < 8 * 2**20
    with np.load(av_digits.DEFAULT_PATH, allow_pickle=False) as data:
        checksum = av_digits.content_checksum(data)
    assert checksum == av_digits.EXPECTED_CHECKSUM


def test_content_checksum_depends_on_content_only():
    a = {"x": np.arange(3, dtype=np.int32), "y": np.zeros((2, 2), np.uint8)}
    reordered = {"y": a["y"].copy(), "x": a["x"].copy()}
    assert av_digits.content_checksum(a) == av_digits.content_checksum(reordered)
    changed = dict(a, x=np.array([0, 1, 3], np.int32))
    assert av_digits.content_checksum(a) != av_digits.content_checksum(changed)
    retyped = dict(a, x=a["x"].astype(np.int64))
    assert av_digits.content_checksum(a) != av_digits.content_checksum(retyped)


@pytest.mark.parametrize(
    "split, size", [("train", 2000), ("test", 1000), ("all", 3000)]
)
def test_shapes_dtypes_and_sizes(split, size):
    data = av_digits.load_av_digits(split)
    assert data.x["image"].shape == (size, 28, 28, 1)
    assert data.x["audio"].shape == (size, 49, 32, 1)
    assert data.x["image"].dtype == data.x["audio"].dtype == np.float32
    for array in (data.y, data.speakers, data.takes, data.mnist_index):
        assert array.shape == (size,) and array.dtype == np.int32
    assert 0.0 <= data.x["image"].min() and data.x["image"].max() <= 1.0
    assert set(np.unique(data.y)) == set(range(10))
    assert len(data.speaker_names) == 6


def test_audio_standardised_with_training_statistics():
    train = av_digits.load_av_digits("train").x["audio"][..., 0].astype(np.float64)
    np.testing.assert_allclose(train.mean(axis=(0, 1)), 0.0, atol=1e-4)
    np.testing.assert_allclose(train.std(axis=(0, 1)), 1.0, atol=1e-4)
    test = av_digits.load_av_digits("test").x["audio"][..., 0]
    assert np.abs(test.mean(axis=(0, 1))).max() > 1e-3


def test_speaker_disjoint_splits():
    train = av_digits.load_av_digits("train")
    test = av_digits.load_av_digits("test")
    train_names = {train.speaker_names[i] for i in train.speakers}
    test_names = {test.speaker_names[i] for i in test.speakers}
    assert test_names == TEST_SPEAKERS
    assert train_names == {"george", "jackson", "lucas", "nicolas"}


def test_image_pools_disjoint_and_drawn_without_replacement():
    train = av_digits.load_av_digits("train")
    test = av_digits.load_av_digits("test")
    assert not set(train.mnist_index) & set(test.mnist_index)
    assert len(set(train.mnist_index)) == 2000 and len(set(test.mnist_index)) == 1000
    train_pixels = {image.tobytes() for image in train.x["image"]}
    assert not any(image.tobytes() in train_pixels for image in test.x["image"])


@needs_raw
def test_image_label_equals_audio_label():
    data = av_digits.load_av_digits("all")
    np.testing.assert_array_equal(_mnist_labels()[data.mnist_index], data.y)


def test_dataset_element_structure():
    dataset = av_digits.av_digits_dataset("test", batch_size=8)
    inputs_spec, label_spec = dataset.element_spec
    assert set(inputs_spec) == {"image", "audio"}
    assert inputs_spec["image"].shape.as_list() == [None, 28, 28, 1]
    assert inputs_spec["audio"].shape.as_list() == [None, 49, 32, 1]
    assert inputs_spec["audio"].dtype == tf.float32 and label_spec.dtype == tf.int32
    inputs, labels = next(iter(dataset))
    data = av_digits.load_av_digits("test")  # The test split is not shuffled.
    np.testing.assert_array_equal(inputs["image"].numpy(), data.x["image"][:8])
    np.testing.assert_array_equal(labels.numpy(), data.y[:8])
    assert sum(int(y.shape[0]) for _, y in dataset) == 1000


def test_dataset_shuffle_is_seeded():
    first = [y.numpy() for _, y in av_digits.av_digits_dataset("train", 500, seed=3)]
    again = [y.numpy() for _, y in av_digits.av_digits_dataset("train", 500, seed=3)]
    np.testing.assert_array_equal(np.concatenate(first), np.concatenate(again))
    unshuffled = av_digits.load_av_digits("train").y
    assert not np.array_equal(np.concatenate(first), unshuffled)


@pytest.mark.parametrize("split", ["valid", "Train", None])
def test_bad_split_raises(split):
    with pytest.raises(ValueError, match=r"`split` must be one of .*Received"):
        av_digits.load_av_digits(split)
    with pytest.raises(ValueError, match="`split`"):
        av_digits.av_digits_dataset(split)


def test_bad_batch_size_raises():
    with pytest.raises(ValueError, match="`batch_size` must be a positive int"):
        av_digits.av_digits_dataset("test", batch_size=0)


def test_write_npz_is_byte_reproducible(tmp_path):
    arrays = {"b": np.arange(6, dtype=np.int32).reshape(2, 3), "a": np.array("hi")}
    tool("build_av_digits").write_npz(tmp_path / "1.npz", arrays)
    tool("build_av_digits").write_npz(tmp_path / "2.npz", arrays)
    assert (tmp_path / "1.npz").read_bytes() == (tmp_path / "2.npz").read_bytes()
    with np.load(tmp_path / "1.npz", allow_pickle=False) as data:
        assert av_digits.content_checksum(data) == av_digits.content_checksum(arrays)


@needs_raw
def test_builder_reproduces_committed_file():
    arrays = tool("build_av_digits").build(RAW_DIR)
    checksum = av_digits.content_checksum(arrays)
    if checksum != av_digits.EXPECTED_CHECKSUM:
        with np.load(av_digits.DEFAULT_PATH, allow_pickle=False) as committed:
            differing = [
                n
                for n in committed.files
                if not np.array_equal(committed[n], arrays.get(n))
            ]
        pytest.fail(
            f"Rebuilt content checksum {checksum} differs from "
            f"EXPECTED_CHECKSUM; arrays that differ: {differing}"
        )


def test_the_skip_reason_says_how_to_get_the_raw_data():
    reason = needs_raw.kwargs["reason"]
    assert "GBLEND_RAW_DATA" in reason and "RAW_DATA_HELP" in reason
    assert "tools/build_av_digits.py" in reason
    assert str(REPO_ROOT.parent) not in reason  # No path outside the repository.
    assert "--raw_dir" in tool("build_av_digits").RAW_DATA_HELP
