"""Benchmarks of what G-Blend costs, measured side by side in one process.

Every comparison runs its variants in the same process, interleaved (the order
flips every round) and repeated; it reports each round's ratio and their median
and range, so load from other processes on the machine hits both sides alike.
Data: the AV-Digits training split (`keras_gblend.data.av_digits`, 2000 clips:
MNIST image + FSDD log-mel audio) with `experiments.common.make_branches` (small
CNN encoders) and `experiments.common.Config()` defaults.

Sections (`--only` picks some):

- `step`: train-step time of `GBlendModel` (loss weights are variables) over the
  same architecture compiled as a plain functional model with float
  `loss_weights`; warmed up, `fit` over many steps of a cached dataset.
- `online`: wall time of an in-situ online G-Blend run (`GBlendCallback`, the
  Config's warm-up and super-epoch) over naive training of the same model for
  the same epochs (build + fit), with the time the callback spends measuring.
  The variant `online_ds` hands the callback `T'` and `V` as cached batched
  datasets instead of arrays.
- `estimation`: offline estimation (`estimation.estimate_offline`, alone and as
  estimate + training) and an exact online run (`GBlendCallback(mode="exact")`)
  as multiples of one naive run.
- `audio`: training epochs fed by an on-the-fly pipeline (WAV files decoded and
  turned into log-mel features in `Dataset.map` with parallel calls and
  prefetch) over the same model fed from in-memory tensors (steady state,
  after a warm-up epoch). `on_the_fly_fast`
  builds the mel matrix and window once instead of per clip.
- `memory`: peak resident memory (`ru_maxrss`) of each variant, each run alone
  in a fresh subprocess (`--variant=NAME`).

Usage (from the repository root):

    python tools/bench.py --output=BENCHMARKS.json   # about 13 min, 2-core CPU
    python tools/bench.py --quick --output=/tmp/b.json   # smoke setting, ~2 min

It prints a table of ratios and writes the numbers to `--output` (JSON).
"""

import dataclasses
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags, logging  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from experiments import common  # noqa: E402
from keras_gblend import (  # noqa: E402
    GBlendCallback,
    GBlendWarning,
    build_gblend_model,
    data,
    estimation,
    measure,
)
from keras_gblend.data import audio, av_digits  # noqa: E402
from keras_gblend.io_utils import atomic_write_json  # noqa: E402
from keras_gblend.models import FUSED  # noqa: E402

SECTIONS = ("step", "online", "estimation", "audio", "memory")
MEMORY_VARIANTS = (
    "baseline",
    "naive",
    "online",
    "offline",
    "exact",
    "audio_cached",
    "audio_on_the_fly",
    "audio_on_the_fly_fast",
    "audio_decoded_once",
)
AUDIO_PIPELINES = ("cached", "on_the_fly", "on_the_fly_fast", "decoded_once")
FSDD_DIRS = (
    REPO_ROOT.parent / "shared" / "data" / "fsdd" / "recordings",
    Path("/work/shared/data/fsdd/recordings"),
)

_QUICK = flags.DEFINE_bool("quick", False, "Tiny smoke setting (for tests).")
_OUTPUT = flags.DEFINE_string("output", "BENCHMARKS.json", "JSON results file.")
_REPEATS = flags.DEFINE_integer("repeats", None, "Rounds per comparison.")
_ONLY = flags.DEFINE_list("only", list(SECTIONS), f"Sections, from {SECTIONS}.")
_VARIANT = flags.DEFINE_string("variant", None, "Internal: run one memory variant.")
_FSDD_DIR = flags.DEFINE_string("fsdd_dir", None, "FSDD recordings folder.")


class Setting:
    """Sizes of one benchmark setting (full or quick)."""

    def __init__(self, quick, repeats=None):
        self.quick = quick
        if quick:
            self.config = common.Config(
                epochs=2,
                batch_size=32,
                warmup_epochs=0,
                super_epoch=1,
                subset_size=32,
                offline_epochs=1,
                exact_epochs=1,
            )
            self.num_examples, self.steps, self.audio_epochs = 192, 5, 1
        else:
            self.config = common.Config()
            self.num_examples, self.steps, self.audio_epochs = None, 100, 2
        self.step_repeats = repeats or (1 if quick else 20)
        self.audio_repeats = repeats or (1 if quick else 7)
        self.run_repeats = repeats or (1 if quick else 5)
        self.exact_repeats = repeats or (1 if quick else 2)


def _rows(setting, total):
    """All rows, or (quick) a fixed random sample that spans every speaker."""
    if setting.num_examples is None:
        return np.arange(total)
    return np.sort(np.random.default_rng(0).permutation(total)[: setting.num_examples])


def _task(setting):
    task = common.load_task("av_digits", setting.config)
    if setting.num_examples is None:
        return task
    rows = _rows(setting, len(task.train[1]))
    return common.Task(
        task.name,
        data.take(task.train, rows),
        task.test,
        task.groups[rows],
        task.num_classes,
    )


def _reset(seed=0):
    keras.backend.clear_session()
    gc.collect()
    keras.utils.set_random_seed(seed)


def _model(task, config, weights=None):
    """The model `experiments.common` trains (same encoders, optimizer, loss)."""
    return common.build_model(task, config, weights)


def _splits(task, config):
    return common.split(task, config, seed=0)


def _naive_weights(task):
    heads = list(task.train[0]) + [FUSED]
    return {h: float(h == FUSED) for h in heads}


def _batched(pair, batch_size=256):
    return tf.data.Dataset.from_tensor_slices(pair).batch(batch_size).cache()


def run_training(kind, task, config):
    """Builds the model and trains it once as `kind`; returns the model.

    Args:
        kind: `"naive"`, `"online"`, `"online_ds"`, `"offline"` (estimate, then
            train with the fixed weights), `"offline_estimate"` (estimate only)
            or `"exact"`.
        task: A `common.Task`.
        config: A `common.Config`.

    Returns:
        The trained (or, for `"offline_estimate"`, untrained) model.
    """
    train, subset, heldout = _splits(task, config)
    naive = kind == "naive"
    model = _model(task, config, _naive_weights(task) if naive else None)
    callbacks = []
    if kind in ("offline", "offline_estimate"):
        estimate = estimation.estimate_offline(
            model,
            train,
            subset,
            heldout,
            epochs=config.offline_epochs,
            batch_size=config.batch_size,
            min_weight=config.min_weight,
        )
        model.set_blend_weights(estimate.weights)
        if kind == "offline_estimate":
            return model
    elif kind in ("online", "online_ds", "exact"):
        if kind == "online_ds":
            subset, heldout = _batched(subset), _batched(heldout)
        callbacks.append(
            GBlendCallback(
                subset,
                heldout,
                warmup_epochs=config.warmup_epochs,
                super_epoch=config.super_epoch,
                min_weight=config.min_weight,
                smoothing=config.smoothing,
                mode="exact" if kind == "exact" else "in_situ",
                train_data=train if kind == "exact" else None,
                exact_epochs=config.exact_epochs,
                verbose=0,
            )
        )
    model.fit(
        *train,
        epochs=config.epochs,
        batch_size=config.batch_size,
        callbacks=callbacks,
        verbose=0,
    )
    return model


class _MeasureTimer:
    """Wraps `measure.head_losses` to add up the time the callback spends in it."""

    def __init__(self):
        self.seconds, self.calls = 0.0, 0
        self._original = measure.head_losses

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self._original(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start
            self.calls += 1


def _interleaved(variants, repeats, reset=True, after=None):
    """Runs every variant once per round, flipping the order every round.

    Returns:
        A dict from variant name to `{"wall": [...], "cpu": [...]}`: seconds of
        wall-clock and of this process's CPU time (all threads) per round. CPU
        time is less disturbed by other processes on a shared machine.
    """
    names = list(variants)
    seconds = {name: {"wall": [], "cpu": []} for name in names}
    for round_ in range(repeats):
        for name in names if round_ % 2 == 0 else names[::-1]:
            if reset:
                _reset()
            gc.collect()
            wall, cpu = time.perf_counter(), time.process_time()
            variants[name]()
            seconds[name]["cpu"].append(time.process_time() - cpu)
            seconds[name]["wall"].append(time.perf_counter() - wall)
            if after:
                after(name)
            print(f"  {name}: {seconds[name]['wall'][-1]:.3f} s", flush=True)
    return seconds


def _summary(values):
    return {
        "values": [round(v, 6) for v in values],
        "median": round(statistics.median(values), 6),
        "min": round(min(values), 6),
        "max": round(max(values), 6),
    }


def _variants(seconds, scale=1.0):
    return {
        name: {
            clock: _summary([v / scale for v in values])
            for clock, values in clocks.items()
        }
        for name, clocks in seconds.items()
    }


def _ratio(seconds, numerator, denominator, target=None):
    """Per-round wall-time ratios (and CPU-time ratios under `cpu`)."""

    def ratios(clock):
        pairs = zip(seconds[numerator][clock], seconds[denominator][clock])
        return [a / b for a, b in pairs]

    result = {"ratio": f"{numerator} / {denominator}", **_summary(ratios("wall"))}
    result["cpu"] = _summary(ratios("cpu"))
    if target is not None:
        result.update(target=target, met=bool(result["median"] <= target))
    return result


def bench_step(setting, task):
    """Section a: GBlendModel vs plain functional model, seconds per step."""
    config = setting.config
    x, y = task.train
    batch = config.batch_size
    features = tf.data.Dataset.from_tensor_slices(x)
    labels = tf.data.Dataset.from_tensor_slices(y)
    heads = list(x) + [FUSED]

    def dataset(dict_labels):
        targets = labels.map(lambda t: {h: t for h in heads}) if dict_labels else labels
        pairs = tf.data.Dataset.zip((features, targets))
        return pairs.batch(batch, drop_remainder=True).cache().repeat().prefetch(2)

    _reset()
    gblend = _model(task, config)
    _reset()
    twin = build_gblend_model(common.make_branches(task, config), task.num_classes)
    plain = keras.Model(twin.input, twin.output, name="plain")
    plain.compile(
        optimizer=keras.optimizers.SGD(config.learning_rate, momentum=config.momentum),
        loss={h: "sparse_categorical_crossentropy" for h in heads},
        loss_weights={h: 1.0 / len(heads) for h in heads},
        metrics={h: ["accuracy"] for h in heads},
    )
    models = {"gblend": (gblend, dataset(False)), "plain": (plain, dataset(True))}
    for model, ds in models.values():  # Warm-up: the first trace is excluded.
        model.fit(
            ds,
            epochs=1,
            steps_per_epoch=max(2, setting.steps // 5),
            verbose=0,
            shuffle=False,
        )

    def timed(name):
        model, ds = models[name]
        return lambda: model.fit(
            ds, epochs=1, steps_per_epoch=setting.steps, verbose=0, shuffle=False
        )

    seconds = _interleaved(
        {name: timed(name) for name in models}, setting.step_repeats, reset=False
    )
    return {
        "what": "seconds per training step (fit over a cached dataset)",
        "steps_per_round": setting.steps,
        "batch_size": batch,
        "variants": _variants(seconds, scale=setting.steps),
        **_ratio(seconds, "gblend", "plain", target=1.02),
    }


def bench_online(setting, task):
    """Section b: in-situ online G-Blend run vs naive run, wall time."""
    timer = _MeasureTimer()
    measure.head_losses = timer
    measuring = {"online": [], "online_ds": []}

    def after(name):
        if name in measuring:
            measuring[name].append(timer.seconds)
        timer.seconds = 0.0

    try:
        seconds = _interleaved(
            {
                kind: (lambda k=kind: run_training(k, task, setting.config))
                for kind in ("naive", "online", "online_ds")
            },
            setting.run_repeats,
            after=after,
        )
    finally:
        measure.head_losses = timer._original
    return {
        "what": "wall seconds of build + fit, same epochs",
        "variants": _variants(seconds),
        "measuring_seconds": {k: _summary(v) for k, v in measuring.items()},
        **_ratio(seconds, "online", "naive", target=1.10),
        "online_ds": _ratio(seconds, "online_ds", "naive", target=1.10),
    }


def bench_estimation(setting, task):
    """Section c: offline and exact-online estimation as multiples of naive."""
    kinds = ("naive", "offline_estimate", "offline", "exact")
    seconds = _interleaved(
        {k: (lambda k=k: run_training(k, task, setting.config)) for k in kinds},
        setting.exact_repeats,
    )
    return {
        "what": "wall seconds of build + estimate and/or fit, as multiples of naive",
        "variants": _variants(seconds),
        "offline_estimate": _ratio(seconds, "offline_estimate", "naive"),
        "offline": _ratio(seconds, "offline", "naive"),
        "exact": _ratio(seconds, "exact", "naive"),
    }


def _fsdd_dir():
    candidates = [Path(_FSDD_DIR.value)] if _FSDD_DIR.value else list(FSDD_DIRS)
    for folder in candidates:
        if folder.is_dir():
            return folder
    return None


class AudioPipelines:
    """The three ways of feeding AV-Digits audio to the same model."""

    def __init__(self, setting, folder):
        split = av_digits.load_av_digits("train")
        rows = _rows(setting, len(split.y))
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


def bench_audio(setting, task):
    """Section d: on-the-fly audio pipeline vs in-memory tensors, same model."""
    folder = _fsdd_dir()
    if folder is None:
        return {"skipped": f"no FSDD recordings in {[str(p) for p in FSDD_DIRS]}"}
    pipelines = AudioPipelines(setting, folder)
    pipelines.check_same_features()
    runs = {}
    for name in AUDIO_PIPELINES:
        _reset()
        model = _model(task, setting.config)
        dataset = getattr(pipelines, name)()
        model.fit(dataset, epochs=1, verbose=0, shuffle=False)  # Warm-up.
        runs[name] = (model, dataset)

    def timed(name):
        model, dataset = runs[name]
        return lambda: model.fit(
            dataset, epochs=setting.audio_epochs, verbose=0, shuffle=False
        )

    seconds = _interleaved(
        {name: timed(name) for name in runs}, setting.audio_repeats, reset=False
    )
    return {
        "what": f"wall seconds of {setting.audio_epochs} training epochs",
        "clips": len(pipelines.labels),
        "fsdd_dir": str(folder),
        "variants": _variants(seconds),
        **_ratio(seconds, "on_the_fly", "cached", target=1.05),
        "on_the_fly_fast": _ratio(seconds, "on_the_fly_fast", "cached", target=1.05),
        "decoded_once": _ratio(seconds, "decoded_once", "cached", target=1.05),
    }


def run_variant(name, setting):
    """Runs one memory variant in this process; returns its peak RSS in MiB."""
    start = time.perf_counter()
    task = _task(setting)
    _reset()
    if name in ("naive", "online", "offline", "exact"):
        run_training(name, task, setting.config)
    elif name.startswith("audio_"):
        folder = _fsdd_dir()
        if folder is None:
            return {"variant": name, "skipped": "no FSDD recordings"}
        pipelines = AudioPipelines(setting, folder)
        dataset = getattr(pipelines, name[len("audio_") :])()
        model = _model(task, setting.config)
        model.fit(dataset, epochs=setting.audio_epochs + 1, verbose=0, shuffle=False)
    elif name != "baseline":
        raise ValueError(f"Unknown variant {name!r}; expected {MEMORY_VARIANTS}.")
    return {
        "variant": name,
        "peak_rss_mib": round(_peak_rss_mib(), 1),
        "seconds": round(time.perf_counter() - start, 2),
    }


def _peak_rss_mib():
    """Peak RSS of this process: `VmHWM` on Linux, else `ru_maxrss`.

    `ru_maxrss` of a child started by fork + exec starts at the parent's RSS at
    fork time (Linux keeps the larger of the two), so it over-reports small
    children of a large parent; `VmHWM` belongs to the new address space only.
    """
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench_memory(setting):
    """Section e: peak RSS of every variant, each alone in a fresh process."""
    results = {}
    for name in MEMORY_VARIANTS:
        command = [sys.executable, __file__, f"--variant={name}"]
        command += ["--quick"] if setting.quick else []
        command += [f"--fsdd_dir={_FSDD_DIR.value}"] if _FSDD_DIR.value else []
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=1800, cwd=REPO_ROOT
        )
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0 or not lines:
            results[name] = {"error": done.stderr[-1500:]}
        else:
            results[name] = json.loads(lines[-1])
        print(f"  {name}: {results[name]}", flush=True)
    return {
        "what": "peak resident set size (ru_maxrss) of one run in a fresh process; "
        "baseline = imports + AV-Digits loaded",
        "variants": results,
    }


def _machine():
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
    }


def _print_table(results):
    print("\n| comparison | wall median | min | max | CPU median | target | met |")
    print("|---|---|---|---|---|---|---|")
    for section in results.values():
        if not isinstance(section, dict):
            continue
        for entry in [section] + [v for v in section.values() if isinstance(v, dict)]:
            if "ratio" in entry:
                print(
                    f"| {entry['ratio']} | {entry['median']:.3f} | {entry['min']:.3f}"
                    f" | {entry['max']:.3f} | {entry['cpu']['median']:.3f}"
                    f" | {entry.get('target', '-')}"
                    f" | {entry.get('met', '-')} |"
                )
    memory = results.get("memory", {}).get("variants", {})
    for name, entry in memory.items():
        print(f"| peak RSS {name} | {entry.get('peak_rss_mib', 'error')} MiB |")


def main(argv):
    del argv
    tf.get_logger().setLevel("ERROR")  # Exact mode's copies retrace by design.
    warnings.simplefilter("ignore", GBlendWarning)  # Collapses are expected here.
    logging.set_verbosity(logging.ERROR)
    setting = Setting(_QUICK.value, _REPEATS.value)
    if _VARIANT.value:
        print(json.dumps(run_variant(_VARIANT.value, setting)))
        return
    unknown = sorted(set(_ONLY.value) - set(SECTIONS))
    if unknown:
        raise app.UsageError(f"--only: unknown {unknown}; choose from {SECTIONS}.")
    report = {
        "command": " ".join(["python", "tools/bench.py"] + sys.argv[1:]),
        "quick": setting.quick,
        "machine": _machine(),
        "data": "AV-Digits train split (2000 clips, or the first "
        f"{setting.num_examples} in --quick), CNN encoders of "
        "experiments.common.make_branches",
        "config": dataclasses.asdict(setting.config),
        "repeats": {
            "step": setting.step_repeats,
            "audio": setting.audio_repeats,
            "online": setting.run_repeats,
            "estimation": setting.exact_repeats,
        },
        "results": {},
    }
    task = _task(setting)
    _reset()
    run_training("naive", _task(Setting(True)), Setting(True).config)  # Warm-up.
    sections = {
        "step": lambda: bench_step(setting, task),
        "online": lambda: bench_online(setting, task),
        "estimation": lambda: bench_estimation(setting, task),
        "audio": lambda: bench_audio(setting, task),
        "memory": lambda: bench_memory(setting),
    }
    for name in SECTIONS:
        if name in _ONLY.value:
            print(f"[{name}]", flush=True)
            start = time.perf_counter()
            report["results"][name] = sections[name]()
            report["results"][name]["section_seconds"] = round(
                time.perf_counter() - start, 1
            )
    report["machine"]["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    atomic_write_json(_OUTPUT.value, report)
    _print_table(report["results"])
    print(f"\nwrote {_OUTPUT.value}")


if __name__ == "__main__":
    app.run(main)
