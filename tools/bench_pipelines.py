"""Training fed from files by `keras_gblend.data.files_dataset` vs in-memory tensors.

One model (`tools.bench_overhead.build_gblend`: the README's encoders, batch
64) trains on the AV-Digits training split fed three ways, interleaved (the order
flips every round, every round starts from empty caches):

- `in_memory`: `data.make_dataset` over the decoded features, already in memory.
- `files`: `data.pipelines.files_dataset` at its defaults: each example's PNG
  image and WAV recording read and decoded (WAV -> log-mel, standardised) in a
  parallel `map`, cached in memory (`cache="auto"`), shuffled, prefetched.
- `files_no_cache`: the same with `cache=False`: decoded again every epoch (what
  an on-the-fly pipeline costs).

It reports each epoch time over the in-memory epoch time of the same round: the
first epoch of `files` (it decodes and fills the cache) separately from the
later ones (they read the cache), the target being <= 1.10 from the second
epoch on. The recordings are the FSDD files that AV-Digits was built from
(`--fsdd_dir` or `FSDD_DIR`; see `keras_gblend.data.av_digits`); without them,
synthetic 1 s WAV files stand in (same format, same decoding work per clip;
the table says which). Images are written once as PNG files to a temporary
folder.

    python -m tools.bench_pipelines --fsdd_dir=../shared/data/fsdd/recordings
    # about 2 min on a 2-core CPU; --quick is the tests' smoke setting
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

from tools import bench_overhead

VARIANTS = ("in_memory", "files", "files_no_cache")


def write_synthetic_wavs(folder, labels, sample_rate=8000, seconds=1.0, seed=0):
    """One 16-bit mono WAV per label: a tone whose pitch is the label, plus noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    paths = []
    for i, label in enumerate(labels):
        signal = 0.3 * np.sin(2 * np.pi * (200 + 150 * int(label)) * t)
        signal += 0.05 * rng.normal(size=t.shape)
        path = Path(folder) / f"clip_{i}.wav"
        with wave.open(str(path), "wb") as handle:
            handle.setnchannels(1)
            handle.setsampwidth(2)
            handle.setframerate(sample_rate)
            handle.writeframes((np.clip(signal, -1, 1) * 32767).astype("<i2"))
        paths.append(str(path))
    return paths


def write_pngs(folder, images):
    import tensorflow as tf

    paths = []
    for i, image in enumerate(images):
        path = str(Path(folder) / f"image_{i}.png")
        pixels = tf.cast(tf.round(image * 255.0), tf.uint8)
        tf.io.write_file(path, tf.io.encode_png(pixels))
        paths.append(path)
    return paths


class Sources:
    """The split's images and recordings as files, and their decoded features."""

    def __init__(self, folder, fsdd_dir=None, num_examples=None):
        import tensorflow as tf

        from keras_gblend import data
        from keras_gblend.data import audio

        split = data.load_av_digits("train")
        rows = np.arange(len(split.y))
        if num_examples is not None:
            rows = np.random.default_rng(0).permutation(rows)[:num_examples]
        self.labels = split.y[rows]
        self.source = "FSDD recordings" if fsdd_dir else "synthetic 1 s WAV files"
        if fsdd_dir:
            self.wavs = [
                str(Path(fsdd_dir) / f"{d}_{split.speaker_names[s]}_{t}.wav")
                for d, s, t in zip(self.labels, split.speakers[rows], split.takes[rows])
            ]
        else:
            self.wavs = write_synthetic_wavs(folder, self.labels)
        self.pngs = write_pngs(folder, split.x["image"][rows])
        log_mel = audio.make_audio_map_fn()
        raw = np.stack(
            list(
                tf.data.Dataset.from_tensor_slices(self.wavs)
                .map(log_mel, num_parallel_calls=tf.data.AUTOTUNE)
                .as_numpy_iterator()
            )
        )
        mean = raw.mean(axis=(0, 1)).astype(np.float32)
        std = np.maximum(raw.std(axis=(0, 1)), 1e-6).astype(np.float32)
        self.in_memory = {
            "image": split.x["image"][rows],
            "audio": ((raw - mean) / std)[..., None],
        }

        def audio_loader(path):
            return ((log_mel(path) - mean) / std)[..., None]

        self.audio_loader = audio_loader

    def image_loader(self):
        from keras_gblend.data import files

        return files.image_map_fn(channels=1)

    def dataset(self, variant, batch_size=64):
        from keras_gblend.data import pipelines

        if variant == "in_memory":
            return pipelines.make_dataset(
                self.in_memory, self.labels, batch_size=batch_size, shuffle=True, seed=0
            )
        return pipelines.files_dataset(
            {"image": self.pngs, "audio": self.wavs},
            self.labels,
            {"image": self.image_loader(), "audio": self.audio_loader},
            batch_size=batch_size,
            shuffle=True,
            seed=0,
            **({"cache": False} if variant == "files_no_cache" else {}),
        )


def epoch_seconds(model, dataset, epochs):
    """Wall seconds of each epoch of `model.fit(dataset)`."""
    import keras

    times = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            times.append(time.perf_counter())

        def on_epoch_end(self, epoch, logs=None):
            times[-1] = time.perf_counter() - times[-1]

    model.fit(dataset, epochs=epochs, verbose=0, shuffle=False, callbacks=[Clock()])
    return times


def measure(settings):
    summary, ratios = bench_overhead.summary, bench_overhead.ratios
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as folder:
        sources = Sources(folder, settings.fsdd_dir, settings.num_examples)
        model = bench_overhead.build_gblend()  # One model: traced once.
        if settings.warmup:
            model.fit(sources.dataset("in_memory"), epochs=1, verbose=0, shuffle=False)
        epochs = {v: [] for v in VARIANTS}

        def run(variant):
            def go():
                dataset = sources.dataset(variant)  # A fresh, empty cache.
                epochs[variant].append(epoch_seconds(model, dataset, settings.epochs))

            return go

        bench_overhead.interleaved({v: run(v) for v in VARIANTS}, settings.rounds)
    memory = [float(np.mean(e)) for e in epochs["in_memory"]]
    first = [e[0] for e in epochs["files"]]
    later = [float(np.mean(e[1:])) for e in epochs["files"]]
    no_cache = [float(np.mean(e)) for e in epochs["files_no_cache"]]
    return {
        "source": sources.source,
        "examples": len(sources.labels),
        "settings": vars(settings),
        "in_memory_epoch_s": summary(memory),
        "files_first_epoch_s": summary(first),
        "files_later_epoch_s": summary(later),
        "files_no_cache_epoch_s": summary(no_cache),
        "files_first_over_in_memory": ratios(first, memory),
        "files_later_over_in_memory": ratios(later, memory),
        "files_no_cache_over_in_memory": ratios(no_cache, memory),
        "load_average": {"before": load_before, "after": os.getloadavg()},
    }


def table(result):
    cell = bench_overhead._cell
    load, settings = result["load_average"], result["settings"]
    rows = [
        ("`files_dataset` (defaults: cached), first epoch", "files_first"),
        (
            f"`files_dataset` (defaults: cached), epochs 2-{settings['epochs']}",
            "files_later",
        ),
        ("`files_dataset(cache=False)`: decoded every epoch", "files_no_cache"),
    ]
    lines = [
        f"{result['examples']} examples ({result['source']} + PNG images), "
        f"{settings['epochs']} epochs per run, {settings['rounds']} interleaved "
        "rounds, median (min - max); in-memory epoch "
        f"{cell(result['in_memory_epoch_s'])} s; load average "
        f"{load['before'][0]:.2f} before, {load['after'][0]:.2f} after.",
        "",
        "| pipeline | epoch time / in-memory epoch time | epoch, s |",
        "|---|---|---|",
    ]
    for name, key in rows:
        lines.append(
            f"| {name} | {cell(result[key + '_over_in_memory'], digits=2)} "
            f"| {cell(result[key + '_epoch_s'])} |"
        )
    return "\n".join(lines) + "\n"


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run")
    parser.add_argument("--num_examples", type=int, default=None)
    parser.add_argument("--fsdd_dir", default=os.environ.get("FSDD_DIR"))
    parser.add_argument("--quick", action="store_true", help="smoke setting")
    parser.add_argument("--output", default=None, help="markdown table (file)")
    parser.add_argument("--json", default=None, help="the numbers (file)")
    settings = parser.parse_args(argv)
    if settings.fsdd_dir and not Path(settings.fsdd_dir).is_dir():
        parser.error(f"--fsdd_dir={settings.fsdd_dir!r} is not a folder.")
    settings.warmup = not settings.quick
    if settings.quick:  # One round of 2 epochs over 64 examples, no warm-up.
        settings.rounds, settings.epochs, settings.num_examples = 1, 2, 64
    return settings


def main(argv=None):
    return bench_overhead.run_and_report(parse(argv), measure, table)


if __name__ == "__main__":
    main()
