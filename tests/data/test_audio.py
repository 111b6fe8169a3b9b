"""Tests for keras_gblend.data.audio, eagerly and inside `Dataset.map`."""

import pathlib
import wave

import numpy as np
import pytest
import tensorflow as tf

from keras_gblend.data import audio

WAV_DIR = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "wav"
WAV_FILES = sorted(WAV_DIR.glob("*.wav"))


def _read_with_wave_module(path):
    """Reference decoder: the standard library's `wave`, int16 / 32768."""
    with wave.open(str(path)) as f:
        assert f.getframerate() == 8000 and f.getsampwidth() == 2
        frames = f.readframes(f.getnframes())
    return np.frombuffer(frames, "<i2").astype(np.float32) / 32768.0


def test_fixtures_exist():
    assert len(WAV_FILES) >= 3


@pytest.mark.parametrize("path", WAV_FILES, ids=lambda p: p.stem)
def test_decode_wav_matches_wave_module(path):
    waveform = audio.decode_wav(tf.io.read_file(str(path)))
    assert waveform.dtype == tf.float32
    np.testing.assert_array_equal(waveform.numpy(), _read_with_wave_module(path))


def test_decode_wav_rejects_wrong_sample_rate():
    contents = tf.io.read_file(str(WAV_FILES[0]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="sample_rate=16000"):
        audio.decode_wav(contents, sample_rate=16000)


@pytest.mark.parametrize(
    "length, expected",
    [(3, [1.0, 2.0, 3.0, 0.0, 0.0]), (5, [1, 2, 3, 4, 5]), (7, [1, 2, 3, 4, 5])],
    ids=["pad", "same", "crop"],
)
def test_fix_length_pads_and_crops(length, expected):
    waveform = np.arange(1, length + 1, dtype=np.float32)
    np.testing.assert_array_equal(audio.fix_length(waveform, 5).numpy(), expected)
    graph_fn = tf.function(
        lambda w: audio.fix_length(w, 5),
        input_signature=[tf.TensorSpec([None], tf.float32)],
    )
    np.testing.assert_array_equal(graph_fn(waveform).numpy(), expected)


@pytest.mark.parametrize("num_samples", [0, -3, 2.5])
def test_fix_length_rejects_bad_num_samples(num_samples):
    with pytest.raises(ValueError, match="`num_samples` must be a positive int"):
        audio.fix_length(tf.zeros([4]), num_samples)


def test_log_mel_shape_and_dtype():
    features = audio.log_mel_spectrogram(tf.zeros([audio.NUM_SAMPLES]))
    assert features.shape == (audio.NUM_FRAMES, audio.NUM_MEL_BINS) == (49, 32)
    assert features.dtype == tf.float32
    # Digital silence maps to log(log_offset).
    np.testing.assert_allclose(features.numpy(), np.log(audio.LOG_OFFSET), rtol=1e-6)
    features64 = audio.log_mel_spectrogram(tf.zeros([800]), dtype=tf.float64)
    assert features64.shape == (1 + (800 - 256) // 160, 32)
    assert features64.dtype == tf.float64


def test_log_mel_rejects_upper_edge_above_nyquist():
    with pytest.raises(ValueError, match="`upper_edge_hertz` must be at most"):
        audio.log_mel_spectrogram(tf.zeros([800]), upper_edge_hertz=5000.0)


def _mel_band_centres_hz(num_bins, lower_hz, upper_hz):
    """Centres of HTK-mel triangular bands, computed independently in numpy."""
    to_mel = lambda hz: 1127.0 * np.log1p(hz / 700.0)  # noqa: E731
    edges = np.linspace(to_mel(lower_hz), to_mel(upper_hz), num_bins + 2)
    return 700.0 * np.expm1(edges[1:-1] / 1127.0)


@pytest.mark.parametrize("band", [4, 12, 20, 28])
def test_pure_tone_energy_in_expected_mel_band(band):
    centres = _mel_band_centres_hz(
        audio.NUM_MEL_BINS, audio.LOWER_EDGE_HERTZ, audio.UPPER_EDGE_HERTZ
    )
    t = np.arange(audio.NUM_SAMPLES) / audio.SAMPLE_RATE
    tone = 0.5 * np.sin(2 * np.pi * centres[band] * t).astype(np.float32)
    features = audio.log_mel_spectrogram(tone).numpy()
    assert np.argmax(features.mean(axis=0)) == band


def test_eager_and_dataset_map_agree():
    paths = [str(p) for p in WAV_FILES]
    eager = np.stack([audio.wav_file_to_log_mel(p).numpy() for p in paths])
    dataset = tf.data.Dataset.from_tensor_slices(paths).map(audio.make_audio_map_fn())
    mapped = np.stack(list(dataset.as_numpy_iterator()))
    assert mapped.shape == (len(paths), 49, 32) and mapped.dtype == np.float32
    np.testing.assert_allclose(mapped, eager, rtol=1e-6, atol=1e-6)


def test_wav_file_to_log_mel_uses_fixed_length():
    # 1_lucas_33.wav is longer than 1 s: its first 8000 samples are kept.
    path = WAV_DIR / "1_lucas_33.wav"
    waveform = _read_with_wave_module(path)
    assert len(waveform) > audio.NUM_SAMPLES
    expected = audio.log_mel_spectrogram(waveform[: audio.NUM_SAMPLES])
    np.testing.assert_allclose(
        audio.wav_file_to_log_mel(str(path)).numpy(), expected.numpy(), rtol=1e-6
    )
