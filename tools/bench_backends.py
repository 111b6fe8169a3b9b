"""Train-step time and in-situ G-Blend overhead of the same model on each backend.

One run measures every backend, each in its own environment (`.venv` for
TensorFlow, `.venv-jax`, `.venv-torch`, as `make test` and `make test-backends`
build them): the driver starts this script as a worker under each backend's
Python, `--rounds` times in alternating order (so load from other processes
hits every backend alike), and reports the median per backend and the ratios
to TensorFlow. Each worker measures, on the AV-Digits training split with the
README's CNN encoders (`encoders.conv_encoder`):

- `step_ms`: milliseconds per training step of `GBlendModel.fit` (batch 64),
  after a warm-up epoch (tracing / compilation excluded).
- `in_situ_overhead`: wall time of build + `fit` with an in-situ
  `GBlendCallback` estimating every epoch, over the same without the callback,
  minus 1 (naive and G-Blend runs interleaved, fresh model each).

Command (about 6 minutes on 2 CPU cores), and the one for a single backend:

    python -m tools.bench_backends
    KERAS_BACKEND=jax .venv-jax/bin/python -m tools.bench_backends --worker
"""

import json
import os
import statistics
import subprocess
import time

from absl import app, flags

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHONS = {
    "tensorflow": ".venv/bin/python",
    "jax": ".venv-jax/bin/python",
    "torch": ".venv-torch/bin/python",
}

flags.DEFINE_bool("worker", False, "Measure the backend in KERAS_BACKEND and exit.")
flags.DEFINE_list("backends", list(PYTHONS), "Backends to compare (driver).")
flags.DEFINE_multi_string(
    "python", [], "BACKEND=PATH: another Python for a backend (driver)."
)
flags.DEFINE_integer("rounds", 2, "Worker runs per backend (driver).")
flags.DEFINE_integer("num_train", 1024, "Training examples (worker).")
flags.DEFINE_integer("batch_size", 64, "Batch size (worker).")
flags.DEFINE_integer("epochs", 3, "Timed epochs (worker).")
FLAGS = flags.FLAGS


def _setup():
    import numpy as np

    from keras_gblend import data

    split = data.load_av_digits("train")
    order = np.random.default_rng(0).permutation(len(split.y))
    train = data.take((split.x, split.y), order[: FLAGS.num_train])
    heldout = data.take((split.x, split.y), order[FLAGS.num_train :][:256])
    subset = data.take(train, range(256))
    return train, subset, heldout


def _model():
    import keras

    from keras_gblend import build_gblend_model
    from keras_gblend.model import encoders

    keras.utils.set_random_seed(0)
    branches = {
        "image": encoders.conv_encoder((28, 28, 1), name="image_encoder"),
        "audio": encoders.conv_encoder((49, 32, 1), name="audio_encoder"),
    }
    model = build_gblend_model(branches, num_classes=10)
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss="sparse_categorical_crossentropy",
    )
    return model


def _fit_seconds(train, epochs, callbacks=()):
    start = time.perf_counter()
    _model().fit(
        *train,
        batch_size=FLAGS.batch_size,
        epochs=epochs,
        shuffle=False,
        callbacks=list(callbacks),
        verbose=0,
    )
    return time.perf_counter() - start


def worker():
    """Measures the backend in KERAS_BACKEND; prints one JSON line."""
    import keras

    from keras_gblend import GBlendCallback

    train, subset, heldout = _setup()
    model = _model()
    fit = dict(batch_size=FLAGS.batch_size, shuffle=False, verbose=0)
    model.fit(*train, epochs=1, **fit)  # warm-up: trace / compile
    start = time.perf_counter()
    model.fit(*train, epochs=FLAGS.epochs, **fit)
    steps = FLAGS.epochs * -(-len(train[1]) // FLAGS.batch_size)
    step_ms = 1000 * (time.perf_counter() - start) / steps
    ratios = []
    for _ in range(2):
        naive = _fit_seconds(train, FLAGS.epochs)
        gblend = GBlendCallback(subset, heldout, warmup_epochs=0, super_epoch=1)
        blended = _fit_seconds(train, FLAGS.epochs, [gblend])
        ratios.append(blended / naive - 1)
    print(
        json.dumps(
            {
                "backend": keras.backend.backend(),
                "step_ms": step_ms,
                "in_situ_overhead": statistics.median(ratios),
            }
        ),
        flush=True,
    )


def _run_worker(backend):
    overrides = dict(item.split("=", 1) for item in FLAGS.python)
    python = overrides.get(backend) or os.path.join(REPO_ROOT, PYTHONS[backend])
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    env["PYTHONPATH"] = REPO_ROOT
    out = subprocess.run(
        [python, "-m", "tools.bench_backends", "--worker"] + _worker_flags(),
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def _worker_flags():
    return [
        f"--num_train={FLAGS.num_train}",
        f"--batch_size={FLAGS.batch_size}",
        f"--epochs={FLAGS.epochs}",
    ]


def driver():
    """Runs the workers in alternating order; prints a Markdown table."""
    results = {b: [] for b in FLAGS.backends}
    for round_ in range(FLAGS.rounds):
        order = FLAGS.backends if round_ % 2 == 0 else FLAGS.backends[::-1]
        for backend in order:
            results[backend].append(_run_worker(backend))
    median = {
        b: {
            k: statistics.median(r[k] for r in runs)
            for k in ("step_ms", "in_situ_overhead")
        }
        for b, runs in results.items()
    }
    base = median[FLAGS.backends[0]]["step_ms"]
    print(f"| backend | ms/step | step time / {FLAGS.backends[0]} | in-situ overhead |")
    print("|---|---|---|---|")
    for b, m in median.items():
        print(
            f"| {b} | {m['step_ms']:.1f} | {m['step_ms'] / base:.2f} "
            f"| {100 * m['in_situ_overhead']:+.0f} % |"
        )
    print(json.dumps(results))


def main(argv):
    del argv
    worker() if FLAGS.worker else driver()


if __name__ == "__main__":
    app.run(main)
