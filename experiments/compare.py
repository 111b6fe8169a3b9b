r"""The paper's comparison: uni-modal, naive fusion, baselines and G-Blend, over seeds.

Usage:

    python -m experiments.compare --preset=demo --output_dir=runs/demo   # make demo
    python -m experiments.compare --preset=full --output_dir=runs/full   # RESULTS.md

`demo` runs every method on AV-Digits with one seed (about 2.5 minutes on a
2-core CPU); `full` runs every method over 5 seeds (about 15 minutes); `smoke`
is a seconds-long setting for tests. Flags given explicitly override the preset.
Writes `results.json`, `results.md` (the table) and `weights.png` (blend weights
over training) to `--output_dir`, and prints the table.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
import warnings

import numpy as np
from absl import app, flags

from experiments import common
from keras_gblend import GBlendWarning, io_utils

PRESETS = {
    "smoke": dict(
        dataset="synthetic",
        methods=["unimodal", "naive", "gblend_offline", "gblend_online"],
        seeds=1,
        config=dict(epochs=1, offline_epochs=1, warmup_epochs=0, super_epoch=1),
    ),
    "demo": dict(dataset="av_digits", methods=list(common.METHODS), seeds=1, config={}),
    "full": dict(dataset="av_digits", methods=list(common.METHODS), seeds=5, config={}),
}

FLAGS = flags.FLAGS
flags.DEFINE_enum("preset", "demo", list(PRESETS), "Setting to start from.")
flags.DEFINE_enum("dataset", None, common.DATASETS, "Data set (overrides preset).")
flags.DEFINE_list("methods", None, "Methods to compare (overrides preset).")
flags.DEFINE_integer("seeds", None, "Number of seeds 0..n-1 (overrides preset).")
flags.DEFINE_integer("epochs", None, "Training epochs (overrides preset).")
flags.DEFINE_list(
    "config", [], "Extra Config overrides as name=value, e.g. super_epoch=5,sep_b=2.5."
)
flags.DEFINE_string("output_dir", "runs/compare", "Where results are written.")
flags.DEFINE_enum("strategy", "default", ["default", "mirrored", "multi_worker"], "")


def summarise(rows):
    """Groups result rows by method: mean, std and per-seed values of each metric."""
    by_method = {}
    for row in rows:
        by_method.setdefault(row["method"], []).append(row)
    summary = {}
    for method, group in by_method.items():
        acc = [100 * r["accuracy"] for r in group]
        ens = [100 * r["ensemble_accuracy"] for r in group if r["ensemble_accuracy"]]
        entry = {
            "accuracy_mean": float(np.mean(acc)),
            "accuracy_std": float(np.std(acc)),
            "accuracy_per_seed": acc,
            "ensemble_mean": float(np.mean(ens)) if ens else None,
            "ensemble_std": float(np.std(ens)) if ens else None,
            "seconds_mean": float(np.mean([r["seconds"] for r in group])),
        }
        if group[0]["weights"]:
            heads = list(group[0]["weights"])
            w = np.array([[r["weights"][h] for h in heads] for r in group])
            entry["weights_mean"] = dict(zip(heads, w.mean(0).tolist()))
            entry["weights_std"] = dict(zip(heads, w.std(0).tolist()))
        summary[method] = entry
    return summary


def markdown_table(summary):
    """The comparison as a markdown table (accuracies in %)."""
    lines = [
        "| method | fused (or only) head, test acc. % | ensemble of heads % "
        "| per seed | final blend weights | s / run |",
        "|---|---|---|---|---|---|",
    ]
    for method, s in summary.items():
        ens = (
            f"{s['ensemble_mean']:.1f} ± {s['ensemble_std']:.1f}"
            if s["ensemble_mean"]
            else "–"
        )
        weights = (
            ", ".join(
                f"{h} {s['weights_mean'][h]:.2f}±{s['weights_std'][h]:.2f}"
                for h in s["weights_mean"]
            )
            if "weights_mean" in s
            else "–"
        )
        seeds = " ".join(f"{a:.1f}" for a in s["accuracy_per_seed"])
        lines.append(
            f"| {method} | {s['accuracy_mean']:.1f} ± {s['accuracy_std']:.1f} | {ens} "
            f"| {seeds} | {weights} | {s['seconds_mean']:.0f} |"
        )
    return "\n".join(lines)


def plot_weights(rows, path, num_epochs=None):
    """Draws blend weights over training for every G-Blend run; returns the path.

    Offline weights are fixed for the whole run: drawn as flat lines up to `num_epochs`.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in rows if r["weight_history"] and r["method"].startswith("gblend")]
    if not runs:
        return None
    methods = sorted({r["method"] for r in runs})
    fig, axes = plt.subplots(
        1, len(methods), figsize=(5 * len(methods), 3.6), squeeze=False
    )
    for ax, method in zip(axes[0], methods):
        for run in (r for r in runs if r["method"] == method):
            history = run["weight_history"]
            if len(history) == 1 and num_epochs:
                history = [history[0], dict(history[0], epoch=num_epochs)]
            heads = [k[len("weight_") :] for k in history[0] if k.startswith("weight_")]
            epochs = [h["epoch"] for h in history]
            for i, head in enumerate(heads):
                ax.plot(
                    epochs,
                    [h[f"weight_{head}"] for h in history],
                    marker="o",
                    color=f"C{i}",
                    alpha=0.7,
                    label=head if run["seed"] == 0 else None,
                )
        ax.set(title=method, xlabel="epoch", ylabel="blend weight", ylim=(-0.02, 1.02))
        ax.legend()
    fig.suptitle("G-Blend weights over training (one line per seed)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _run_in_subprocess(method, dataset, config, seed, output_dir, strategy):
    """Runs one method in a fresh process (`experiments.train`); returns its rows.

    Under a multi-replica `tf.distribute` strategy, models trained one after the
    other in one process can collide in TensorFlow's collectives ("Shape mismatch
    in the collective instance", seen after the uni-modal runs on 2 CPU replicas):
    each run gets its own process instead.
    """
    overrides = [f"{k}={v}" for k, v in dataclasses.asdict(config).items()]
    run_dir = os.path.join(output_dir, "runs")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.train",
            f"--method={method}",
            f"--dataset={dataset}",
            f"--seed={seed}",
            f"--strategy={strategy}",
            f"--config={','.join(overrides)}",
            f"--output_dir={run_dir}",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    path = os.path.join(run_dir, f"{dataset}_{method}_seed{seed}.json")
    with open(path) as handle:
        return json.load(handle)["rows"]


def run_comparison(dataset, methods, seeds, config, output_dir, strategy="default"):
    """Runs every method for every seed; writes results; returns (summary, rows)."""
    rows = []
    start = time.perf_counter()
    for seed in range(seeds):
        task = common.load_task(dataset, config, seed=seed)
        for method in methods:
            if strategy == "default":
                new_rows = common.run_method(method, task, config, seed=seed)
            else:
                new_rows = _run_in_subprocess(
                    method, dataset, config, seed, output_dir, strategy
                )
            for row in new_rows:
                rows.append(row)
                print(
                    f"[{time.perf_counter() - start:6.0f} s] seed {seed} "
                    f"{row['method']:<16} acc {100 * row['accuracy']:.1f}",
                    flush=True,
                )
    summary = summarise(rows)
    table = markdown_table(summary)
    elapsed = time.perf_counter() - start
    io_utils.atomic_write_json(
        os.path.join(output_dir, "results.json"),
        {
            "dataset": dataset,
            "seeds": seeds,
            "config": dataclasses.asdict(config),
            "seconds": elapsed,
            "summary": summary,
            "rows": rows,
        },
    )
    io_utils.atomic_write_text(
        os.path.join(output_dir, "results.md"),
        f"{dataset}, {seeds} seed(s), {config.epochs} epochs, {elapsed:.0f} s\n\n"
        f"{table}\n",
    )
    plot_weights(rows, os.path.join(output_dir, "weights.png"), config.epochs)
    return summary, rows, table


def main(argv):
    del argv
    # The weight history in results.json records every estimate; the per-estimate
    # GBlendWarnings would only bury the progress lines here.
    warnings.filterwarnings("ignore", category=GBlendWarning)
    preset = PRESETS[FLAGS.preset]
    overrides = dict(preset["config"])
    if FLAGS.epochs is not None:
        overrides["epochs"] = FLAGS.epochs
    overrides.update(common.parse_overrides(FLAGS.config))
    config = dataclasses.replace(common.Config(), **overrides)
    methods = FLAGS.methods or preset["methods"]
    unknown = sorted(set(methods) - set(common.METHODS))
    if unknown:
        raise app.UsageError(
            f"Unknown --methods {unknown}; choose from {common.METHODS}."
        )
    dataset = FLAGS.dataset or preset["dataset"]
    seeds = FLAGS.seeds or preset["seeds"]
    print(f"Comparing {methods} on {dataset}, {seeds} seed(s), {config.epochs} epochs")
    _, _, table = run_comparison(
        dataset, methods, seeds, config, FLAGS.output_dir, FLAGS.strategy
    )
    print()
    print(table)
    print(f"\nWrote {FLAGS.output_dir}/results.md, results.json, weights.png")
    print(json.dumps({"output_dir": FLAGS.output_dir}))


if __name__ == "__main__":
    app.run(main)
