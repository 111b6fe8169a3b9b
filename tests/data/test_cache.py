"""The file pipelines decode each example once by default (issue 19)."""

import pathlib
import warnings

import numpy as np
import pytest
import tensorflow as tf

from keras_gblend.common.messages import GBlendWarning
from keras_gblend.data import audio, datasets, pipelines

WAV_DIR = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "wav"
NUM = 6


def _counting_loader(calls):
    """A loader `path -> float32[2]` that records every path it decodes."""

    def decode(path):
        calls.append(path.numpy().decode())
        return np.array([len(path.numpy()), 1.0], np.float32)

    def load(path):
        return tf.ensure_shape(tf.py_function(decode, [path], tf.float32), [2])

    return load


def _files(tmp_path):
    paths = []
    for i in range(NUM):
        path = tmp_path / f"clip_{i}.bin"
        path.write_bytes(b"x")
        paths.append(str(path))
    return {"a": paths}, np.arange(NUM) % 2


def _two_epochs(dataset):
    return [
        np.concatenate([f["a"][:, 0] for f, _ in dataset.as_numpy_iterator()])
        for _ in range(2)
    ]


def test_files_dataset_decodes_every_example_once_over_two_epochs(tmp_path):
    paths, y = _files(tmp_path)
    calls = []
    ds = pipelines.files_dataset(
        paths, y, {"a": _counting_loader(calls)}, batch_size=4, shuffle=True, seed=0
    )
    first, second = _two_epochs(ds)
    assert sorted(calls) == sorted(paths["a"])  # once each, in the first epoch
    assert sorted(first) == sorted(second)  # the cache gives the same examples


def test_cache_false_decodes_every_epoch(tmp_path):
    paths, y = _files(tmp_path)
    calls = []
    ds = pipelines.files_dataset(
        paths,
        y,
        {"a": _counting_loader(calls)},
        batch_size=4,
        shuffle=False,
        cache=False,
    )
    _two_epochs(ds)
    assert sorted(calls) == sorted(paths["a"] * 2)


def test_cache_on_disk_is_read_back_by_a_new_pipeline(tmp_path):
    paths, y = _files(tmp_path)
    prefix = str(tmp_path / "cache" / "decoded")
    (tmp_path / "cache").mkdir()
    calls = []

    def pipeline():
        return pipelines.files_dataset(
            paths,
            y,
            {"a": _counting_loader(calls)},
            batch_size=4,
            shuffle=False,
            cache=prefix,
        )

    first = _two_epochs(pipeline())
    assert len(calls) == NUM
    assert list((tmp_path / "cache").glob("decoded*.index"))
    again = _two_epochs(pipeline())  # a fresh pipeline reads the files on disk
    assert len(calls) == NUM
    np.testing.assert_array_equal(again, first)


def test_auto_cache_skips_memory_when_the_data_do_not_fit(tmp_path, monkeypatch):
    paths, y = _files(tmp_path)
    monkeypatch.setattr(datasets, "available_memory_bytes", lambda: 10)
    calls = []
    with pytest.warns(GBlendWarning, match="cache=<file prefix>"):
        ds = pipelines.files_dataset(
            paths, y, {"a": _counting_loader(calls)}, batch_size=4, shuffle=False
        )
    _two_epochs(ds)
    assert len(calls) == 2 * NUM
    # With room to spare the same call caches, and says nothing.
    monkeypatch.setattr(datasets, "available_memory_bytes", lambda: 2**30)
    calls.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = pipelines.files_dataset(
            paths, y, {"a": _counting_loader(calls)}, batch_size=4, shuffle=False
        )
    _two_epochs(ds)
    assert len(calls) == NUM


def test_decoded_size_bytes_from_the_element_spec():
    ds = tf.data.Dataset.from_tensor_slices(
        ({"a": np.zeros((5, 3), "float32"), "b": np.zeros((5, 2), "uint8")}, [0] * 5)
    )
    assert datasets.decoded_size_bytes(ds) == 5 * (3 * 4 + 2 * 1 + 4)
    unknown_shape = ds.map(lambda f, y: (tf.zeros([y + 1]), y))
    assert datasets.decoded_size_bytes(unknown_shape) is None
    assert datasets.decoded_size_bytes(ds.repeat()) is None  # infinite
    assert datasets.decoded_size_bytes(tf.data.Dataset.from_tensors("s")) is None


def test_tfrecord_dataset_caches_parsed_examples_by_default(tmp_path):
    x = {"a": np.arange(8, dtype="float32").reshape(4, 2)}
    paths, spec = pipelines.write_tfrecord(tmp_path / "d.tfrecord", x, [0, 1, 0, 1])
    cached = pipelines.tfrecord_dataset(paths, spec, batch_size=2, shuffle=False)
    plain = pipelines.tfrecord_dataset(
        paths, spec, batch_size=2, shuffle=False, cache=False
    )

    def chain(dataset):
        names = []
        while dataset is not None:
            names.append(type(dataset).__name__)
            dataset = getattr(dataset, "_input_dataset", None)
        return names

    assert "CacheDataset" in chain(cached) and "CacheDataset" not in chain(plain)
    np.testing.assert_array_equal(
        np.concatenate([f["a"] for f, _ in cached.as_numpy_iterator()]), x["a"]
    )


@pytest.mark.parametrize("cache", [1, 0.5, None])
def test_finish_rejects_bad_cache(cache):
    with pytest.raises(ValueError, match="`cache` must be True, False"):
        datasets.finish(
            tf.data.Dataset.range(3), batch_size=2, shuffle=False, cache=cache
        )


def test_audio_map_fn_matches_per_clip_features_bit_for_bit():
    paths = [str(p) for p in sorted(WAV_DIR.glob("*.wav"))]
    eager = np.stack([audio.wav_file_to_log_mel(p).numpy() for p in paths])
    map_fn = audio.make_audio_map_fn()
    once = np.stack([map_fn(p).numpy() for p in paths])
    mapped = np.stack(
        list(tf.data.Dataset.from_tensor_slices(paths).map(map_fn).as_numpy_iterator())
    )
    np.testing.assert_array_equal(once, eager)
    np.testing.assert_array_equal(mapped, eager)
    other = audio.make_audio_map_fn(num_mel_bins=16, dtype=tf.float64)(paths[0])
    expected = audio.wav_file_to_log_mel(paths[0], num_mel_bins=16, dtype=tf.float64)
    np.testing.assert_array_equal(other.numpy(), expected.numpy())


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"num_bins": 3}, TypeError, "unexpected keyword"),
        ({"upper_edge_hertz": 5000.0}, ValueError, "at most sample_rate / 2"),
        ({"log_offset": 0.0}, ValueError, "`log_offset` must be positive"),
    ],
    ids=["unknown", "nyquist", "log_offset"],
)
def test_audio_map_fn_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        audio.make_audio_map_fn(**kwargs)
