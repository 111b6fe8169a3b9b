"""Benchmarks of what G-Blend costs, measured side by side in one process.

Every comparison runs its variants in the same process, interleaved (the order
flips every round) and repeated; it reports each round's ratio and their median
and range, so load from other processes on the machine hits both sides alike.
Data: the AV-Digits training split (`keras_gblend.data.av_digits`, 2000 clips:
MNIST image + FSDD log-mel audio) with `experiments.common.Config()` defaults.
Every run is the experiments' own method (`experiments.methods.METHODS`), so the
benchmark times exactly what the comparison trains.

Sections (`--only` picks some):

- `step`: train-step time of `GBlendModel` (loss weights are variables) over the
  same architecture compiled as a plain functional model with float
  `loss_weights`; warmed up, `fit` over many steps of a cached dataset.
- `online`: wall time of an in-situ online G-Blend run (`GBlendCallback`, the
  Config's warm-up and super-epoch) over naive training of the same model for
  the same epochs (build + fit), with the time the callback spends measuring.
  The variant `online_ds` hands the callback `T'` and `V` as cached batched
  datasets instead of arrays.
- `estimation`: offline estimation (`head_copies.estimate_offline`, alone and as
  estimate + training) and an exact online run (`GBlendCallback(mode="exact")`)
  as multiples of one naive run.
- `audio` (`tools.bench_audio`; needs the FSDD recordings, `--fsdd_dir`):
  training epochs fed by an on-the-fly pipeline (WAV files decoded and
  turned into log-mel features in `Dataset.map` with parallel calls and
  prefetch) over the same model fed from in-memory tensors (steady state,
  after a warm-up epoch). `on_the_fly_fast`
  builds the mel matrix and window once instead of per clip.
- `memory`: peak resident memory (`ru_maxrss`) of each variant, each run alone
  in a fresh subprocess (`--variant=NAME`).

Usage (from the repository root):

    python -m tools.bench --output=BENCHMARKS.json   # about 13 min, 2-core CPU
    python -m tools.bench --quick --output=/tmp/b.json   # smoke setting, ~2 min

It prints a table of ratios and writes the numbers to `--output` (JSON).
"""

import dataclasses
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import keras
import tensorflow as tf
from absl import app, flags, logging

from experiments import cli, common, methods, rows
from keras_gblend import GBlendWarning, build_gblend_model, data
from keras_gblend.blend import measure
from keras_gblend.common.io_utils import atomic_write_json
from keras_gblend.model.gblend_model import FUSED
from tools import bench_audio
from tools import bench_timing as timing

REPO_ROOT = Path(__file__).resolve().parents[1]

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
# Benchmark kind -> the experiments' method that trains it.
KINDS = {
    "naive": "naive",
    "online": "gblend_online",
    "online_ds": "gblend_online",
    "offline": "gblend_offline",
    "exact": "gblend_exact",
}

_QUICK = flags.DEFINE_bool("quick", False, "Tiny smoke setting (for tests).")
_OUTPUT = flags.DEFINE_string("output", "BENCHMARKS.json", "JSON results file.")
_REPEATS = flags.DEFINE_integer("repeats", None, "Rounds per comparison.")
_ONLY = flags.DEFINE_list("only", list(SECTIONS), f"Sections, from {SECTIONS}.")
_VARIANT = flags.DEFINE_string("variant", None, "Internal: run one memory variant.")
_FSDD_DIR = flags.DEFINE_string(
    "fsdd_dir", None, "FSDD recordings folder (default: $FSDD_DIR); see bench_audio."
)


class Setting:
    """Sizes of one benchmark setting (full or quick)."""

    def __init__(self, quick, repeats=None):
        self.quick = quick
        if quick:  # Its numbers mean nothing: every section runs, cheaply.
            self.config = common.Config(
                epochs=2,
                batch_size=32,
                warmup_epochs=0,
                super_epoch=1,
                subset_size=32,
                offline_epochs=1,
                exact_epochs=1,
                encoders="image:mlp+audio:mlp",  # Fewer ops to trace per run.
            )
            self.num_examples, self.steps, self.audio_epochs = 128, 5, 1
        else:
            self.config = common.Config()
            self.num_examples, self.steps, self.audio_epochs = None, 100, 2
        self.step_repeats = repeats or (1 if quick else 20)
        self.audio_repeats = repeats or (1 if quick else 7)
        self.run_repeats = repeats or (1 if quick else 5)
        self.exact_repeats = repeats or (1 if quick else 2)


def _task(setting):
    task = common.load_task("av_digits", setting.config)
    if setting.num_examples is None:
        return task
    rows = bench_audio.rows_of(setting, len(task.train[1]))
    return common.Task(
        task.name,
        data.take(task.train, rows),
        task.test,
        task.groups[rows],
        task.num_classes,
    )


def _batched(pair, batch_size=256):
    return tf.data.Dataset.from_tensor_slices(pair).batch(batch_size).cache()


def run_training(kind, task, config):
    """Trains once as `kind` with the experiments' own method; returns the model.

    Args:
        kind: A key of `KINDS`, or `"offline_estimate"` (the offline estimate
            alone). `"online_ds"` hands the callback `T'` and `V` as cached
            batched datasets instead of arrays.
        task: A `common.Task`.
        config: A `common.Config`.

    Returns:
        The trained (or, for `"offline_estimate"`, untrained) model.
    """
    ctx = common.make_context(task, config, seed=0)
    if kind == "offline_estimate":
        model = common.build_model(task, config)
        model.set_blend_weights(rows.offline_estimate(ctx, model).weights)
        return model
    if kind == "online_ds":
        ctx = dataclasses.replace(
            ctx, subset=_batched(ctx.subset), heldout=_batched(ctx.heldout)
        )
    return methods.METHODS[KINDS[kind]](ctx).model


class _MeasureTimer:
    """Wraps `measure.measurement` to add up the time the callback spends in it."""

    def __init__(self):
        self.seconds, self.calls = 0.0, 0
        self._original = measure.measurement

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self._original(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start
            self.calls += 1


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

    timing.fresh_session()
    gblend = common.build_model(task, config)
    timing.fresh_session()
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

    seconds = timing.interleaved(
        {name: timed(name) for name in models}, setting.step_repeats, reset=False
    )
    return {
        "what": "seconds per training step (fit over a cached dataset)",
        "steps_per_round": setting.steps,
        "batch_size": batch,
        "variants": timing.variants(seconds, scale=setting.steps),
        **timing.ratio(seconds, "gblend", "plain", target=1.02),
    }


def bench_online(setting, task):
    """Section b: in-situ online G-Blend run vs naive run, wall time."""
    timer = _MeasureTimer()
    measure.measurement = timer
    measuring = {"online": [], "online_ds": []}

    def after(name):
        if name in measuring:
            measuring[name].append(timer.seconds)
        timer.seconds = 0.0

    try:
        seconds = timing.interleaved(
            {
                kind: (lambda k=kind: run_training(k, task, setting.config))
                for kind in ("naive", "online", "online_ds")
            },
            setting.run_repeats,
            after=after,
        )
    finally:
        measure.measurement = timer._original
    return {
        "what": "wall seconds of build + fit, same epochs",
        "variants": timing.variants(seconds),
        "measuring_seconds": {k: timing.summary(v) for k, v in measuring.items()},
        **timing.ratio(seconds, "online", "naive", target=1.10),
        "online_ds": timing.ratio(seconds, "online_ds", "naive", target=1.10),
    }


def bench_estimation(setting, task):
    """Section c: offline and exact-online estimation as multiples of naive."""
    kinds = ("naive", "offline_estimate", "offline", "exact")
    seconds = timing.interleaved(
        {k: (lambda k=k: run_training(k, task, setting.config)) for k in kinds},
        setting.exact_repeats,
    )
    return {
        "what": "wall seconds of build + estimate and/or fit, as multiples of naive",
        "variants": timing.variants(seconds),
        "offline_estimate": timing.ratio(seconds, "offline_estimate", "naive"),
        "offline": timing.ratio(seconds, "offline", "naive"),
        "exact": timing.ratio(seconds, "exact", "naive"),
    }


def run_variant(name, setting):
    """Runs one memory variant in this process; returns its peak RSS in MiB."""
    start = time.perf_counter()
    task = _task(setting)
    timing.fresh_session()
    quarters = None
    if name in ("naive", "online", "offline", "exact"):
        with timing.RssSampler() as sampler:
            run_training(name, task, setting.config)
        quarters = sampler.quarters()
    elif name.startswith("audio_"):
        folder = bench_audio.fsdd_dir(_FSDD_DIR.value)
        if folder is None:
            return _skipped(name)
        pipelines = bench_audio.AudioPipelines(setting, folder)
        dataset = getattr(pipelines, name[len("audio_") :])()
        model = common.build_model(task, setting.config)
        model.fit(dataset, epochs=setting.audio_epochs + 1, verbose=0, shuffle=False)
    elif name != "baseline":
        raise ValueError(f"Unknown variant {name!r}; expected {MEMORY_VARIANTS}.")
    result = {
        "variant": name,
        "peak_rss_mib": round(timing.peak_rss_mib(), 1),
        "seconds": round(time.perf_counter() - start, 2),
    }
    if quarters:  # RSS while training: flat if nothing piles up per estimate.
        result["rss_mib_quarters"] = quarters
    return result


def _skipped(name):
    """An audio variant's result without the FSDD recordings."""
    return {"variant": name, "skipped": bench_audio.HOW_TO_GET_FSDD}


def bench_memory(setting):
    """Section e: peak RSS of every variant, each alone in a fresh process."""
    results = {}
    no_fsdd = bench_audio.fsdd_dir(_FSDD_DIR.value) is None
    for name in MEMORY_VARIANTS:
        if name.startswith("audio_") and no_fsdd:  # What `run_variant` would say,
            # without a process that imports TensorFlow only to say it.
            results[name] = _skipped(name)
            print(f"  {name}: skipped (no FSDD recordings)", flush=True)
            continue
        command = [sys.executable, "-m", "tools.bench", f"--variant={name}"]
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
        "command": " ".join(["python", "-m", "tools.bench"] + sys.argv[1:]),
        "quick": setting.quick,
        "machine": timing.machine(),
        "data": "AV-Digits train split (2000 clips, or the first "
        f"{setting.num_examples} in --quick), encoders {setting.config.encoders} "
        "(experiments.common.make_branches)",
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
    timing.fresh_session()
    if not setting.quick:  # Untimed: imports, first traces of the timed model.
        run_training("naive", task, dataclasses.replace(setting.config, epochs=1))
    sections = {
        "step": lambda: bench_step(setting, task),
        "online": lambda: bench_online(setting, task),
        "estimation": lambda: bench_estimation(setting, task),
        "audio": lambda: bench_audio.bench_audio(
            setting, task, bench_audio.fsdd_dir(_FSDD_DIR.value)
        ),
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
    timing.print_table(report["results"])
    print(f"\nwrote {_OUTPUT.value}")


if __name__ == "__main__":
    cli.run_program(main)
