r"""The paper's comparison: uni-modal, naive fusion, baselines and G-Blend, over seeds.

Usage:

    python -m experiments.compare --preset=demo --output_dir=runs/demo   # make demo
    python -m experiments.compare --preset=full --output_dir=runs/full   # RESULTS.md

`demo` runs the paper's comparison (uni-modal, naive, dropout, offline and in-situ
G-Blend, G-Blend + dropout, OGM-GE) on AV-Digits with one seed
(about 1.5 minutes on an idle 2-core CPU); `full` runs every method over 5 seeds (about
20 minutes); `smoke`
is a seconds-long setting for tests. Flags given explicitly override the preset.
Writes `results.json`, `results.md` (the table), `weights.png` (blend weights
over training) and one G-Blend state file per G-Blend run,
`states/<method>_seed<seed>.json` (plot one with `python -m tools.plot_blend`), to
`--output_dir`, and prints the table, its legend and a few sentences of what it
shows, computed from its numbers (`experiments.legends`). TensorFlow's ops are
deterministic unless `--nodeterministic`: the same seeds print the same table.
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

from experiments import cli, common, legends, methods
from keras_gblend import GBlendWarning
from keras_gblend.common import io_utils
from keras_gblend.report import plot
from keras_gblend.report.history import BlendHistory, read_history

DEMO_METHODS = [
    "unimodal",
    "naive",
    "dropout",
    "gblend_offline",
    "gblend_online",
    "gblend_dropout",
    "ogm_ge",
]
# RESULTS.md's full comparison: every method of the paper's comparison, the
# recipes and the package's defaults (the fused-head study's rows are
# `study_fused`'s).
FULL_METHODS = [
    "unimodal",
    "naive",
    "dropout",
    "early_stopping",
    "pretrain",
    "uniform",
    "gblend_offline",
    "gblend_online",
    "gblend_exact",
    "gblend_dropout",
    "gblend_recipe",
    "gblend_default",
    "gblend_default_num_heads",
    "heads_dropout",
    "gblend_offline_recipe",
    "ogm_ge",
]
PRESETS = {
    "smoke": dict(
        dataset="synthetic",
        methods=["unimodal", "naive", "gblend_offline", "gblend_online"],
        seeds=1,
        config=dict(
            epochs=1, offline_epochs=1, warmup_epochs=0, super_epoch=1, subset_size=200
        ),
    ),
    # `make demo`'s first half (its second half is `crossval --preset=demo`,
    # which shows the recipe and its ablation under the fair protocol).
    "demo": dict(dataset="av_digits", methods=DEMO_METHODS, seeds=1, config={}),
    "full": dict(dataset="av_digits", methods=FULL_METHODS, seeds=5, config={}),
}

FLAGS = flags.FLAGS
flags.DEFINE_enum("preset", "demo", list(PRESETS), "Setting to start from.")
flags.DEFINE_enum("dataset", None, common.DATASETS, "Data set (overrides preset).")
flags.DEFINE_list(
    "methods", None, f"Methods to compare (overrides preset): {list(methods.METHODS)}."
)
flags.DEFINE_integer("seeds", None, "Number of seeds 0..n-1 (overrides preset).")
flags.DEFINE_integer("epochs", None, "Training epochs (overrides preset).")
flags.DEFINE_string("output_dir", "runs/compare", "Where results are written.")
cli.define_shared_flags()


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


def _spread(mean, std, count):
    """`mean ± std` over several seeds; the value alone for one seed."""
    return f"{mean:.1f} ± {std:.1f}" if count > 1 else f"{mean:.1f}"


def markdown_table(summary):
    """The comparison as a markdown table (accuracies in %).

    With one seed, values are printed without a spread (a std of one value
    would read as a measured 0).
    """
    lines = [
        "| method | fused (or only) head, test acc. % | ensemble of heads % "
        "| per seed | final blend weights | s / run |",
        "|---|---|---|---|---|---|",
    ]
    for method, s in summary.items():
        count = len(s["accuracy_per_seed"])
        ens = (
            _spread(s["ensemble_mean"], s["ensemble_std"], count)
            if s["ensemble_mean"]
            else "–"
        )
        weights = (
            ", ".join(
                f"{h} {s['weights_mean'][h]:.2f}"
                + (f"±{s['weights_std'][h]:.2f}" if count > 1 else "")
                for h in s["weights_mean"]
            )
            if "weights_mean" in s
            else "–"
        )
        seeds = " ".join(f"{a:.1f}" for a in s["accuracy_per_seed"])
        lines.append(
            f"| {method} | {_spread(s['accuracy_mean'], s['accuracy_std'], count)} "
            f"| {ens} | {seeds} | {weights} | {s['seconds_mean']:.0f} |"
        )
    return "\n".join(lines)


def weight_histories(rows):
    """Blend weights over training of every G-Blend row, for `plot_weight_runs`.

    Online runs: read from their state file; runs with fixed weights (offline):
    their weights, from epoch 0.

    Returns:
        A dict from method to a list of `BlendHistory`s, in row order.
    """
    runs = {}
    for row in rows:
        if not row["method"].startswith("gblend") or not row["weights"]:
            continue
        if row.get("state_path"):
            history = read_history(row["state_path"])
        else:
            heads = tuple(row["weights"])
            weights = np.array([[row["weights"][h] for h in heads]])
            history = BlendHistory(
                heads, {"weight": np.array([0])}, {"weight": weights}
            )
        runs.setdefault(row["method"], []).append(history)
    return runs


def state_path(output_dir, method, seed):
    """Where a G-Blend run of the comparison writes its state file."""
    return os.path.join(output_dir, "states", f"{method}_seed{seed}.json")


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
            f"--state_path={state_path(output_dir, method, seed)}",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    path = os.path.join(run_dir, f"{dataset}_{method}_seed{seed}.json")
    with open(path) as handle:
        return json.load(handle)["rows"]


def run_comparison(
    dataset, method_names, seeds, config, output_dir, strategy="default"
):
    """Runs every method for every seed; writes results.

    Returns:
        `(summary, rows, table)`.
    """
    rows = []
    start = time.perf_counter()
    for seed in range(seeds):
        task = common.load_task(dataset, config, seed=seed)
        for method in method_names:
            if strategy == "default":
                new_rows = methods.run_method(
                    method,
                    task,
                    config,
                    seed=seed,
                    state_path=state_path(output_dir, method, seed),
                )
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
    plot.plot_weight_runs(
        weight_histories(rows), os.path.join(output_dir, "weights.png"), config.epochs
    )
    return summary, rows, table


def main(argv):
    del argv
    # The state files record every estimate; the per-estimate GBlendWarnings
    # would only bury the progress lines here.
    warnings.filterwarnings("ignore", category=GBlendWarning)
    if FLAGS.deterministic:
        common.enable_determinism()
    preset = PRESETS[FLAGS.preset]
    settings = dict(preset["config"])
    if FLAGS.epochs is not None:
        settings["epochs"] = FLAGS.epochs
    config = cli.make_config(FLAGS.config, **settings)
    chosen = FLAGS.methods or preset["methods"]
    unknown = sorted(set(chosen) - set(methods.METHODS))
    if unknown:
        raise app.UsageError(
            f"--methods: unknown {unknown}; choose from {list(methods.METHODS)}."
        )
    dataset = FLAGS.dataset or preset["dataset"]
    seeds = FLAGS.seeds or preset["seeds"]
    print(f"Comparing {chosen} on {dataset}, {seeds} seed(s), {config.epochs} epochs")
    summary, _, table = run_comparison(
        dataset, chosen, seeds, config, FLAGS.output_dir, FLAGS.strategy
    )
    print()
    print(table)
    print()
    print(legends.compare_legend(summary))
    print()
    print(legends.compare_conclusions(summary, seeds))
    out = FLAGS.output_dir
    print(f"\nWrote {out}/results.md, results.json, weights.png and {out}/states/")


if __name__ == "__main__":
    cli.run_program(main)
