"""The audio-pipeline section of `tools.bench`: decoding on the fly vs cached.

Needs the Free Spoken Digit Dataset recordings (not in this repository):
`git clone https://github.com/Jakobovski/free-spoken-digit-dataset` and pass
`--fsdd_dir=free-spoken-digit-dataset/recordings` (or set `FSDD_DIR`).
"""

import os
from pathlib import Path

import numpy as np
import tensorflow as tf

from experiments import common
from keras_gblend.data import audio, av_digits
from tools import bench_timing as timing

AUDIO_PIPELINES = ("cached", "on_the_fly", "on_the_fly_fast", "decoded_once")
HOW_TO_GET_FSDD = (
    "the FSDD recordings are not in this repository: git clone "
    "https://github.com/Jakobovski/free-spoken-digit-dataset and pass "
    "--fsdd_dir=free-spoken-digit-dataset/recordings (or set FSDD_DIR)"
)


def rows_of(setting, total):
    """All rows, or (quick) a fixed random sample that spans every speaker."""
    if setting.num_examples is None:
        return np.arange(total)
    return np.sort(np.random.default_rng(0).permutation(total)[: setting.num_examples])


def fsdd_dir(flag_value=None):
    """The FSDD recordings folder from the flag or `FSDD_DIR`, or None."""
    value = flag_value or os.environ.get("FSDD_DIR")
    return Path(value) if value and Path(value).is_dir() else None


class AudioPipelines:
    """The three ways of feeding AV-Digits audio to the same model."""

    def __init__(self, setting, folder):
        split = av_digits.load_av_digits("train")
        rows = rows_of(setting, len(split.y))
        self.paths = np.array(
            [
                str(folder / f"{d}_{split.speaker_names[s]}_{t}.wav")
                for d, s, t in zip(
                    split.y[rows], split.speakers[rows], split.takes[rows]
                )
            ]
        )
        self.images, self.labels = split.x["image"][rows], split.y[rows]
        self.batch_size = setting.config.batch_size
        raw = np.stack(
            list(
                tf.data.Dataset.from_tensor_slices(self.paths)
                .map(audio.make_audio_map_fn(), num_parallel_calls=tf.data.AUTOTUNE)
                .as_numpy_iterator()
            )
        )
        self.mean = raw.mean(axis=(0, 1)).astype(np.float32)
        self.std = np.maximum(raw.std(axis=(0, 1)), 1e-6).astype(np.float32)
        self.features = self._normalise(raw)[..., None]

    def _normalise(self, log_mel):
        return (log_mel - self.mean) / self.std

    def _finish(self, dataset):
        return dataset.prefetch(tf.data.AUTOTUNE)

    def cached(self):
        x = {"image": self.images, "audio": self.features}
        ds = tf.data.Dataset.from_tensor_slices((x, self.labels))
        ds = ds.shuffle(len(self.labels), seed=0).batch(self.batch_size)
        return self._finish(ds)

    def _source(self):
        ds = tf.data.Dataset.from_tensor_slices((self.paths, self.images, self.labels))
        return ds.shuffle(len(self.labels), seed=0)

    def on_the_fly(self):
        to_features = audio.make_audio_map_fn()

        def load(path, image, label):
            features = self._normalise(to_features(path))[..., None]
            return {"image": image, "audio": features}, label

        ds = self._source().map(load, num_parallel_calls=tf.data.AUTOTUNE)
        return self._finish(ds.batch(self.batch_size))

    def on_the_fly_fast(self):
        """`on_the_fly` with the mel matrix and window built once, not per clip.

        Same float64 arithmetic as `audio.log_mel_spectrogram`; what a patch to
        `audio.make_audio_map_fn` would do (see BENCHMARKS.md).
        """
        mel = tf.signal.linear_to_mel_weight_matrix(
            num_mel_bins=audio.NUM_MEL_BINS,
            num_spectrogram_bins=audio.FFT_LENGTH // 2 + 1,
            sample_rate=audio.SAMPLE_RATE,
            lower_edge_hertz=audio.LOWER_EDGE_HERTZ,
            upper_edge_hertz=audio.UPPER_EDGE_HERTZ,
            dtype=tf.float64,
        )
        window = tf.signal.hann_window(audio.FRAME_LENGTH, dtype=tf.float64)

        def load(path, image, label):
            waveform = audio.fix_length(audio.decode_wav(tf.io.read_file(path)))
            stft = tf.signal.stft(
                tf.cast(waveform, tf.float64),
                frame_length=audio.FRAME_LENGTH,
                frame_step=audio.FRAME_STEP,
                fft_length=audio.FFT_LENGTH,
                window_fn=lambda length, dtype: window,
            )
            log_mel = tf.math.log(tf.matmul(tf.abs(stft), mel) + audio.LOG_OFFSET)
            features = self._normalise(tf.cast(log_mel, tf.float32))[..., None]
            return {"image": image, "audio": features}, label

        ds = self._source().map(load, num_parallel_calls=tf.data.AUTOTUNE)
        return self._finish(ds.batch(self.batch_size))

    def decoded_once(self):
        """`on_the_fly` with `Dataset.cache()` after decoding: decodes once."""
        to_features = audio.make_audio_map_fn()

        def load(path, image, label):
            features = self._normalise(to_features(path))[..., None]
            return {"image": image, "audio": features}, label

        ds = tf.data.Dataset.from_tensor_slices((self.paths, self.images, self.labels))
        ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE).cache()
        ds = ds.shuffle(len(self.labels), seed=0).batch(self.batch_size)
        return self._finish(ds)

    def check_same_features(self):
        """Every pipeline must give the same audio features, in the same order."""
        x, _ = next(iter(self.cached()))
        for name in ("on_the_fly", "on_the_fly_fast"):
            other, _ = next(iter(getattr(self, name)()))
            np.testing.assert_allclose(other["audio"], x["audio"], atol=1e-5)


def bench_audio(setting, task, folder):
    """Section d: on-the-fly audio pipeline vs in-memory tensors, same model."""
    if folder is None:
        return {"skipped": HOW_TO_GET_FSDD}
    pipelines = AudioPipelines(setting, folder)
    pipelines.check_same_features()
    runs = {}
    for name in AUDIO_PIPELINES:
        timing.fresh_session()
        model = common.build_model(task, setting.config)
        dataset = getattr(pipelines, name)()
        model.fit(dataset, epochs=1, verbose=0, shuffle=False)  # Warm-up.
        runs[name] = (model, dataset)

    def timed(name):
        model, dataset = runs[name]
        return lambda: model.fit(
            dataset, epochs=setting.audio_epochs, verbose=0, shuffle=False
        )

    seconds = timing.interleaved(
        {name: timed(name) for name in runs}, setting.audio_repeats, reset=False
    )
    return {
        "what": f"wall seconds of {setting.audio_epochs} training epochs",
        "clips": len(pipelines.labels),
        "fsdd_dir": str(folder),
        "variants": timing.variants(seconds),
        **timing.ratio(seconds, "on_the_fly", "cached", target=1.05),
        "on_the_fly_fast": timing.ratio(
            seconds, "on_the_fly_fast", "cached", target=1.05
        ),
        "decoded_once": timing.ratio(seconds, "decoded_once", "cached", target=1.05),
    }
