"""What keras_gblend costs over plain Keras, on the current Keras backend.

Run it once per backend, each in its own environment, with `KERAS_BACKEND` set:

    KERAS_BACKEND=tensorflow .venv/bin/python -m tools.bench_overhead --json=tf.json
    KERAS_BACKEND=jax .venv-jax/bin/python -m tools.bench_overhead --json=jax.json
    KERAS_BACKEND=torch .venv-torch/bin/python -m tools.bench_overhead --json=pt.json
    python -m tools.bench_overhead --combine tf.json jax.json pt.json

(about 1 min for TensorFlow on a 2-core CPU with the defaults; JAX and PyTorch
take 2-4x longer; `--quick` is the smoke setting of the tests, its numbers mean
nothing). Same data and encoders everywhere: the AV-Digits training split
(`keras_gblend.data.load_av_digits`), the README's encoders
(`conv_encoder((28, 28, 1), filters=(8,))` for the image,
`mlp_encoder((49, 32, 1))` for the audio), batch 64, SGD(0.01, momentum 0.9).
Every round runs the variants of a question one after the other, the order
flipping every round, and each question reports min / median / max over rounds:

- `step`: ms per training step of a plain functional Keras model (the same
  layers, float `loss_weights`, one label per head) and of the `GBlendModel`
  (loss weights are variables, one label copied to every head), after a
  warm-up `fit` that traces / compiles.
- `run`: a naive run (build + `fit`, no callback) and an in-situ G-Blend run
  (the same plus `GBlendCallback(T', V)` at its defaults; `V` = 20% of the
  speakers, `T'` = 1000 examples), same epochs; and the floor: the naive run
  plus the forward passes the callback cannot avoid (one pass over `T'` and `V`
  per measurement, and one over `V` at the end, where its default
  `output="auto"` chooses the output mode on `V`), timed alone on the trained
  model through the callback's own path (the sets prepared once, one traced
  loss function, its batch size of 256), after an untimed pass that traces.

`--combine` reads the JSON files of several backends and writes the table that
sets each backend against TensorFlow (a backend's own cost) next to the
package's ratios on it (our cost). Those cross-backend ratios come from separate
processes, not interleaved: read them as rough.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

from tools.bench_report import cell as _cell  # noqa: F401 (other tools use it)
from tools.bench_report import combined_table, table


def load_task(num_train=None, subset_size=1000):
    """AV-Digits train split: `(train, T', V)`, `V` = 20% of the speakers."""
    from keras_gblend import data

    split = data.load_av_digits("train")
    train, heldout = data.holdout_split(
        (split.x, split.y), heldout_fraction=0.2, groups=split.speakers
    )
    if num_train is not None:
        train = data.take(train, range(min(num_train, len(train[1]))))
        heldout = data.take(heldout, range(min(num_train // 2, len(heldout[1]))))
    subset = data.sample_subset(train, min(subset_size, len(train[1])))
    return train, subset, heldout


def build_gblend(seed=0):
    """The README's model, compiled as the README compiles it."""
    import keras

    from keras_gblend import build_gblend_model
    from keras_gblend.model import encoders

    keras.utils.set_random_seed(seed)
    branches = {
        "image": encoders.conv_encoder((28, 28, 1), filters=(8,)),
        "audio": encoders.mlp_encoder((49, 32, 1)),
    }
    model = build_gblend_model(branches, num_classes=10)
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss="sparse_categorical_crossentropy",
    )
    return model


def build_plain(seed=0):
    """The same layers as a plain functional Keras model with float loss weights."""
    import keras

    gblend = build_gblend(seed)
    model = keras.Model(gblend.input, gblend.output, name="plain")
    heads = list(gblend.head_names)
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss={h: "sparse_categorical_crossentropy" for h in heads},
        loss_weights={h: 1.0 / len(heads) for h in heads},
    )
    return model, heads


def interleaved(variants, rounds, cpu=None, after=None):
    """Wall seconds of every variant per round; the order flips every round.

    With a dict `cpu`, also fills it with this process's CPU seconds (all
    threads) per round: less disturbed than wall time by other processes.
    `after` maps a variant's name to a function called, untimed, with what the
    variant returned (to measure something on its result outside its time).
    """
    names, after = list(variants), after or {}
    seconds = {name: [] for name in names}
    for round_ in range(rounds):
        for name in names if round_ % 2 == 0 else names[::-1]:
            start, start_cpu = time.perf_counter(), time.process_time()
            result = variants[name]()
            seconds[name].append(time.perf_counter() - start)
            if cpu is not None:
                cpu.setdefault(name, []).append(time.process_time() - start_cpu)
            if name in after:
                after[name](result)
    return seconds


def summary(values):
    """Median, min and max of a list of numbers."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "values": list(values),
    }


def ratios(numerators, denominators):
    return summary([a / b for a, b in zip(numerators, denominators)])


def bench_step(train, steps, rounds, batch_size=64, warmup=True):
    """ms per step, plain functional model vs GBlendModel, and their ratio."""
    from keras_gblend import data

    x, y = data.take(train, range(min(steps * batch_size, len(train[1]))))
    per_epoch = -(-len(y) // batch_size)
    epochs = -(-steps // per_epoch)  # Enough epochs for `steps` steps a round:
    steps = epochs * per_epoch  # a `fit` call's own set-up weighs little.
    plain, heads = build_plain()
    gblend = build_gblend()
    fit = dict(batch_size=batch_size, epochs=epochs, shuffle=False, verbose=0)
    per_head = {h: y for h in heads}
    variants = {
        "plain": lambda: plain.fit(x, per_head, **fit),
        "gblend": lambda: gblend.fit(x, y, **fit),
    }
    for run in variants.values() if warmup else ():
        run()  # Warm-up: trace / compile.
    cpu = {}
    seconds = interleaved(variants, rounds, cpu)
    ms = {k: [1000 * s / steps for s in v] for k, v in seconds.items()}
    return {
        "steps": steps,
        "plain_ms": summary(ms["plain"]),
        "gblend_ms": summary(ms["gblend"]),
        "gblend_over_plain": ratios(ms["gblend"], ms["plain"]),
        "gblend_over_plain_cpu": ratios(cpu["gblend"], cpu["plain"]),
    }


def forward_seconds(model, pairs, batch_size=256):
    """Seconds of one forward pass over each `(x, y)` of `pairs`, batched.

    Through the path the callback measures with: each set prepared once
    (`prepare_sets`: backend tensors, every batch of one shape) and run by one
    traced prediction function (`LossFunction`, where the backend and model
    allow; else `model.predict`, as the callback does then). A first, untimed
    pass traces / compiles, so only the passes are timed: the floor is the
    forward passes themselves, not their set-up.
    """
    from keras_gblend.blend import compiled_losses, measure

    supported = compiled_losses.LossFunction.supported(model)
    function = compiled_losses.LossFunction(model) if supported else None
    sets = [
        compiled_losses.prepare(pair, model=model, batch_size=batch_size)
        for pair in pairs
    ]
    sets = [prepared._replace(function=function) for prepared in sets]
    for prepared in sets:
        measure.per_example_losses(model, prepared, batch_size=batch_size)
    start = time.perf_counter()
    for prepared in sets:
        measure.per_example_losses(model, prepared, batch_size=batch_size)
    return time.perf_counter() - start


def bench_run(train, subset, heldout, epochs, rounds, batch_size=64, warmup=True):
    """Naive run, in-situ G-Blend run, and the floor, each as seconds per round."""
    from keras_gblend import GBlendCallback

    fit = dict(batch_size=batch_size, epochs=epochs, verbose=0)
    found = {"measurements": [], "forward": [], "forward_v": [], "callback": []}

    def naive():
        build_gblend().fit(*train, **fit)

    class Timed(GBlendCallback):  # Its own time: every hook it implements.
        seconds = 0.0

        def _timed(self, hook, *args):
            start = time.perf_counter()
            getattr(super(), hook)(*args)
            self.seconds += time.perf_counter() - start

        def on_train_begin(self, logs=None):
            self._timed("on_train_begin", logs)

        def on_epoch_begin(self, epoch, logs=None):
            self._timed("on_epoch_begin", epoch, logs)

        def on_epoch_end(self, epoch, logs=None):
            self._timed("on_epoch_end", epoch, logs)

        def on_train_end(self, logs=None):
            self._timed("on_train_end", logs)

    def in_situ():
        model = build_gblend()
        callback = Timed(subset, heldout, verbose=0)
        model.fit(*train, callbacks=[callback], **fit)
        return model, callback

    def passes(result):  # Untimed: on the run's trained model, after its time.
        model, callback = result
        found["callback"].append(callback.seconds)
        found["measurements"].append(len(callback.measurements))
        found["forward"].append(forward_seconds(model, [subset, heldout]))
        found["forward_v"].append(forward_seconds(model, [heldout]))

    if warmup:  # Both paths once (imports, first traces), not timed.
        naive()
        in_situ()
    cpu = {}
    variants = {"naive": naive, "in_situ": in_situ}
    seconds = interleaved(variants, rounds, cpu, after={"in_situ": passes})
    floor = [  # Measurements, and `V` once more for the output mode at the end.
        n + count * forward + forward_v
        for n, count, forward, forward_v in zip(
            seconds["naive"],
            found["measurements"],
            found["forward"],
            found["forward_v"],
        )
    ]
    return {
        "epochs": epochs,
        "measurements": found["measurements"][0],
        "forward_ms": summary([1000 * f for f in found["forward"]]),
        "naive_s": summary(seconds["naive"]),
        "in_situ_s": summary(seconds["in_situ"]),
        "in_situ_over_naive": ratios(seconds["in_situ"], seconds["naive"]),
        "in_situ_over_naive_cpu": ratios(cpu["in_situ"], cpu["naive"]),
        "floor_over_naive": ratios(floor, seconds["naive"]),
        # Naive plus the callback's own time in the in-situ run of the round:
        # what the callback costs, without the two runs' difference in noise.
        "callback_over_naive": ratios(
            [n + c for n, c in zip(seconds["naive"], found["callback"])],
            seconds["naive"],
        ),
    }


def machine():
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
    }


def measure(settings):
    """Every question on the current backend, as a dict (see the module doc).

    With `settings.mirrored` (TensorFlow only), every model is built in the
    scope of a `tf.distribute.MirroredStrategy` over the visible GPUs.
    """
    import keras

    if settings.mirrored:
        import tensorflow as tf

        with tf.distribute.MirroredStrategy().scope():
            settings.mirrored = False
            result = measure(settings)
        result["settings"]["mirrored"] = True
        return result

    train, subset, heldout = load_task(settings.num_train, settings.subset_size)
    load_before = os.getloadavg()
    result = {
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
        "machine": machine(),
        "settings": vars(settings),
        "examples": {
            "train": len(train[1]),
            "T'": len(subset[1]),
            "V": len(heldout[1]),
        },
        "step": bench_step(
            train, settings.steps, settings.rounds, warmup=settings.warmup
        ),
        "run": bench_run(
            train,
            subset,
            heldout,
            settings.epochs,
            settings.rounds,
            warmup=settings.warmup,
        ),
    }
    result["load_average"] = {"before": load_before, "after": os.getloadavg()}
    return result


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=100, help="steps per step round")
    parser.add_argument("--epochs", type=int, default=6, help="epochs per run")
    parser.add_argument("--num_train", type=int, default=None, help="train examples")
    parser.add_argument("--subset_size", type=int, default=1000, help="|T'|")
    parser.add_argument(
        "--mirrored", action="store_true", help="MirroredStrategy (TensorFlow)"
    )
    parser.add_argument("--quick", action="store_true", help="smoke setting")
    parser.add_argument("--output", default=None, help="markdown table (file)")
    parser.add_argument("--json", default=None, help="the numbers (file)")
    parser.add_argument("--combine", nargs="+", default=None, help="JSON files")
    settings = parser.parse_args(argv)
    settings.warmup = not settings.quick
    if settings.quick:  # One round, 5 epochs (one estimate), no warm-up.
        settings.rounds, settings.steps, settings.epochs = 1, 2, 5
        settings.num_train, settings.subset_size = 128, 64
    return settings


def write(text, path):
    print(text, flush=True)
    if path:
        with open(path, "w") as handle:
            handle.write(text)


def main(argv=None):
    settings = parse(argv)
    if settings.combine:
        results = []
        for path in settings.combine:
            with open(path) as handle:
                results.append(json.load(handle))
        write(combined_table(results), settings.output)
        return results
    del settings.combine
    return run_and_report(settings, measure, table)


def run_and_report(settings, measure_fn, table_fn):
    """Runs `measure_fn(settings)`, writes its table (and JSON if asked); the
    paths `settings.output` and `settings.json` are taken off `settings` first."""
    output, json_path = settings.output, settings.json
    del settings.output, settings.json
    result = measure_fn(settings)
    if json_path:
        with open(json_path, "w") as handle:
            json.dump(result, handle, indent=1)
    write(table_fn(result), output)
    return result


if __name__ == "__main__":
    main()
