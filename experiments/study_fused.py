r"""Why does the fused head stay near naive fusion when G-Blend is on? Measured.

Usage (about 10 minutes on a 2-core CPU for RESULTS.md's table):

    python -m experiments.study_fused --fold=0 --seeds=2 \
        --output=runs/study_fused/results.jsonl

Every row trains on one cross-validation fold's training speakers minus `V`
and is scored on `V` (whole training speakers, `protocol.selection_task`): the
fold's test speakers are never read, so what is learnt here may choose the
recipe. The rows are rows of `experiments.methods.METHODS` (the study's own are
the second half of `experiments.rows`: learning-rate scales, fused floors, a
stop-gradient fusion, the recipes' estimators), run by `methods.run_method` with
two extra fields: `audio_shuffled_accuracy` (the fused head's accuracy on `V`
with the audio permuted across examples: how much it leans on audio) and
`weight_history` (every G-Blend estimate). This program only chooses the rows
and formats the table.
"""

from __future__ import annotations

import dataclasses
import functools
import time

import numpy as np
from absl import flags

from experiments import cli, methods, protocol
from experiments.ledger import Ledger

# RESULTS.md's table, in its order.
ROWS = [
    "unimodal",
    "naive",
    "naive_lr_third",
    "naive_lr_x3",
    "uniform",
    "uniform_x3",
    "gblend_online",
    "gblend_x3",
    "gblend_x3_floor",
    "gblend_x3_stop",
    "dropout",
    "dropout_x3",
    "gblend_dropout",
    "gblend_x3_dropout",
    "uniform_heads_dropout",
    "recipe_paper",
    "recipe_uncertain",
    "recipe_windowed",
    "recipe_robust",
    "recipe_rate",
    "recipe_rate_uncertain",
]
EVALUATIONS = ("audio_shuffled_accuracy", "weight_history")


def format_study(rows):
    """Markdown table of study rows: per row name, means over seeds (in %).

    Columns: output head, every head, heads' ensemble, output head with the
    audio shuffled, and the final weights.
    """
    by = {}
    for r in rows:
        by.setdefault(r["method"], []).append(r)
    lines = [
        "| variant | n | output % | heads % | ensemble % | audio shuffled % | weights |",  # noqa: E501
        "|---|---|---|---|---|---|---|",
    ]
    for name, rs in by.items():

        def mean(get, rs=rs):
            vals = [get(r) for r in rs]
            return "–" if None in vals else f"{100 * np.mean(vals):.1f}"

        heads = " ".join(
            f"{h} {mean(lambda r, h=h: r['head_accuracy'][h])}"
            for h in rs[0]["head_accuracy"]
        )
        weights = " ".join(
            f"{h} {np.mean([r['weights'][h] for r in rs]):.2f}"
            for h in (rs[0]["weights"] or {})
        )
        lines.append(
            f"| {name} | {len(rs)} | {mean(lambda r: r['accuracy'])} | {heads} | "
            f"{mean(lambda r: r.get('ensemble_accuracy'))} | "
            f"{mean(lambda r: r.get('audio_shuffled_accuracy'))} | {weights} |"
        )
    return "\n".join(lines)


def _progress(row, seed, seconds):
    heads = " ".join(f"{h} {100 * a:.1f}" for h, a in row["head_accuracy"].items())
    shuffled = row.get("audio_shuffled_accuracy")
    weights = " ".join(f"{h} {w:.2f}" for h, w in (row["weights"] or {}).items())
    return (
        f"[{seconds:5.0f} s] {row['method']} seed {seed}: V acc "
        f"{100 * row['accuracy']:.1f} | heads {heads} | ens "
        f"{100 * (row['ensemble_accuracy'] or 0):.1f} | audio shuffled "
        f"{'-' if shuffled is None else f'{100 * shuffled:.1f}'} | weights {weights}"
    )


FLAGS = flags.FLAGS


def define_flags():
    """Defines the script's flags (only when run as a script)."""
    flags.DEFINE_list("rows", ROWS, "Rows of experiments.methods.METHODS to run.")
    flags.DEFINE_integer(
        "fold", 0, "Cross-validation fold whose training speakers are used."
    )
    flags.DEFINE_integer("folds", 3, "Number of speaker folds.")
    flags.DEFINE_integer("seeds", 2, "Seeds 0..n-1.")
    flags.DEFINE_string("output", "runs/study_fused/results.jsonl", "Resumable JSONL.")
    cli.define_config_flag()


def main(argv):
    del argv
    config = cli.make_config(FLAGS.config)
    pool = protocol.pooled_av_digits()
    speakers = protocol.speaker_folds(pool[2], FLAGS.folds)[FLAGS.fold]
    task = protocol.selection_task(protocol.fold_task(pool, speakers), config, 0)
    header = dict(config=dataclasses.asdict(config), fold=FLAGS.fold, study="fused")
    ledger = Ledger(FLAGS.output, header)
    run = functools.partial(methods.run_method, evaluations=EVALUATIONS)
    start = time.perf_counter()
    for name in FLAGS.rows:
        for seed in range(FLAGS.seeds):
            key = ("study", FLAGS.fold, name, config.learning_rate, seed)
            for row in ledger.run(key, run, name, task, config, seed):
                print(_progress(row, seed, time.perf_counter() - start), flush=True)
    rows = [r for rec in ledger.records.values() for r in rec.get("rows", [])]
    print(format_study(rows))


if __name__ == "__main__":
    define_flags()
    cli.run_program(main)
