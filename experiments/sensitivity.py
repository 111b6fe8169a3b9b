r"""Sensitivity of G-Blend to its settings, one setting varied at a time.

Usage (about 15 minutes on a 2-core CPU):

    python -m experiments.sensitivity --dataset=av_digits --seeds=2 \
        --method=gblend_online --output_dir=runs/sensitivity

Varies the super-epoch length, the warm-up, the size of the held-out set V and
the minimum weight around the defaults of `experiments.common.Config`, and writes
`sensitivity.md` / `sensitivity.json` with the fused head's test accuracy (mean and
std over seeds) for each value.
"""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np
from absl import app, flags

from experiments import cli, common, methods
from keras_gblend.common import io_utils

GRID = {
    "super_epoch": [1, 3, 5, 10],
    "warmup_epochs": [0, 2, 5],
    "heldout_fraction": [0.25, 0.5],
    "min_weight": [0.0, 0.05, 0.1, 0.2],
    "smoothing": [0.0, 0.5],
}

FLAGS = flags.FLAGS
flags.DEFINE_enum("dataset", "av_digits", common.DATASETS, "Data set.")
flags.DEFINE_enum(
    "method", "gblend_online", list(methods.METHODS), "G-Blend method to study."
)
flags.DEFINE_integer("seeds", 2, "Seeds 0..n-1.")
flags.DEFINE_integer("epochs", common.Config.epochs, "Training epochs.")
flags.DEFINE_list("params", list(GRID), "Which settings to vary.")
flags.DEFINE_string("output_dir", "runs/sensitivity", "Where results are written.")
cli.define_shared_flags()


def sweep(dataset, method, seeds, base, params, output_dir, strategy="default"):
    """Runs the grid; returns the list of result entries (also written to disk)."""
    results = []
    start = time.perf_counter()
    tasks = {seed: common.load_task(dataset, base, seed=seed) for seed in range(seeds)}
    for param in params:
        for value in GRID[param]:
            config = dataclasses.replace(base, **{param: value})
            acc = []
            for seed, task in tasks.items():
                (row,) = methods.run_method(
                    method, task, config, seed=seed, strategy=strategy
                )
                acc.append(100 * row["accuracy"])
            results.append(
                dict(
                    param=param,
                    value=value,
                    default=getattr(base, param) == value,
                    accuracy_mean=float(np.mean(acc)),
                    accuracy_std=float(np.std(acc)),
                    accuracy_per_seed=acc,
                )
            )
            print(
                f"[{time.perf_counter() - start:5.0f} s] {param}={value}: "
                f"{np.mean(acc):.1f} ± {np.std(acc):.1f}",
                flush=True,
            )
    lines = [
        f"{method} on {dataset}, {seeds} seed(s), {base.epochs} epochs; "
        "one setting varied at a time (* = default)",
        "",
        "| setting | value | fused test acc. % | per seed |",
        "|---|---|---|---|",
    ]
    for r in results:
        mark = "*" if r["default"] else ""
        seeds_text = " ".join(f"{a:.1f}" for a in r["accuracy_per_seed"])
        lines.append(
            f"| {r['param']} | {r['value']}{mark} | "
            f"{r['accuracy_mean']:.1f} ± {r['accuracy_std']:.1f} | {seeds_text} |"
        )
    io_utils.atomic_write_text(
        os.path.join(output_dir, "sensitivity.md"), "\n".join(lines) + "\n"
    )
    io_utils.atomic_write_json(os.path.join(output_dir, "sensitivity.json"), results)
    return results


def main(argv):
    del argv
    unknown = sorted(set(FLAGS.params) - set(GRID))
    if unknown:
        raise app.UsageError(f"Unknown --params {unknown}; choose from {list(GRID)}.")
    if FLAGS.deterministic:
        common.enable_determinism()
    base = cli.make_config(FLAGS.config, epochs=FLAGS.epochs)
    sweep(
        FLAGS.dataset,
        FLAGS.method,
        FLAGS.seeds,
        base,
        FLAGS.params,
        FLAGS.output_dir,
        FLAGS.strategy,
    )
    with open(os.path.join(FLAGS.output_dir, "sensitivity.md")) as handle:
        print(handle.read())


if __name__ == "__main__":
    cli.run_program(main)
