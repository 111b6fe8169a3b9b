r"""Speaker-fold cross-validation: the fair comparison on AV-Digits, as a program.

Usage (RESULTS.md's table, ~60 min on 2 shared cores; `--preset=smoke`: seconds):

    python -m experiments.crossval --seeds=5 \
        --evaluations=modes,audio_shuffled_accuracy,weight_history \
        --methods=unimodal,naive,dropout,uniform_heads_dropout,gblend_offline_recipe,recipe_paper

Runs `experiments.protocol.run_protocol` (AV-Digits' 6 speakers pooled, cut into
`--folds` folds of whole speakers, each method's learning rate chosen per fold
on `V` only) over rows of `experiments.methods.METHODS`, with `--evaluations`
as extra result fields, and writes the table (`experiments.cv_report`): per
method the mean, paired differences against image-only and naive fusion with
95% t-intervals over the (fold, seed) pairs, and win counts. Every finished run
is appended to `--output` (JSONL): a killed run continues where it stopped.
"""

from __future__ import annotations

import functools
import os

from absl import app, flags

from experiments import cli, cv_report, evaluations, legends, protocol
from experiments.methods import run_method

HEADLINE = [
    "unimodal",
    "naive",
    "dropout",
    "gblend_offline_recipe",
    "gblend_recipe",
    "heads_dropout",
    "gblend_default",
]
# The first block of the README (every default) next to the baselines.
DEMO = ["unimodal", "naive", "gblend_default", "heads_dropout"]
PRESETS = {
    "full": dict(
        seeds=5, folds=3, grid=protocol.DEFAULT_GRID, methods=HEADLINE, config={}
    ),
    # `make demo`'s slice: every fold, one seed, one learning rate for every
    # method (0.03, the rate V chose most often in the full protocol).
    "demo": dict(seeds=1, folds=3, grid=(0.03,), methods=DEMO, config={}),
    "smoke": dict(
        seeds=1,
        folds=3,
        grid=protocol.DEFAULT_GRID,
        methods=HEADLINE,
        config=protocol.SMOKE,
    ),
}
FLAGS = flags.FLAGS


def _define_flags():
    flags.DEFINE_enum("preset", "full", list(PRESETS), "Setting to start from.")
    flags.DEFINE_enum("dataset", "av_digits", list(protocol.POOLS), "Pooled data set.")
    flags.DEFINE_list(
        "methods", None, "Rows of experiments.methods.METHODS (overrides preset)."
    )
    flags.DEFINE_integer("folds", None, "Speaker folds (overrides preset).")
    flags.DEFINE_integer("seeds", None, "Seeds per fold (overrides preset).")
    flags.DEFINE_list("lr_grid", None, "Learning-rate grid (overrides preset).")
    flags.DEFINE_list(
        "evaluations",
        list(evaluations.DEFAULT),
        f"Extra result fields of every run, from {list(evaluations.EVALUATIONS)}.",
    )
    cli.define_config_flag()
    flags.DEFINE_list(
        "baselines", list(cv_report.BASELINES), "Rows to pair every method with."
    )
    flags.DEFINE_string(
        "output", "runs/crossval/results.jsonl", "Resumable JSONL file."
    )


def main(argv):
    del argv
    preset = PRESETS[FLAGS.preset]
    config = cli.make_config(FLAGS.config, **preset["config"])
    unknown = sorted(set(FLAGS.evaluations) - set(evaluations.EVALUATIONS))
    if unknown:
        raise app.UsageError(
            f"--evaluations: unknown {unknown}; choose from "
            f"{list(evaluations.EVALUATIONS)}."
        )
    grid = FLAGS.lr_grid or preset["grid"]
    load_pool, standardise = protocol.POOLS[FLAGS.dataset]
    results = protocol.run_protocol(
        FLAGS.methods or preset["methods"],
        load_pool(),
        config,
        folds=FLAGS.folds or preset["folds"],
        seeds=FLAGS.seeds or preset["seeds"],
        grid=tuple(float(v) for v in grid),
        output=FLAGS.output,
        run_fn=functools.partial(run_method, evaluations=tuple(FLAGS.evaluations)),
        name=FLAGS.dataset,
        standardise=standardise,
    )
    baselines = tuple(FLAGS.baselines)
    table = legends.crossval_table(cv_report.summarise(results, baselines), baselines)
    with open(os.path.splitext(FLAGS.output)[0] + ".md", "w") as handle:
        handle.write(table + "\n")
    print(table)


if __name__ == "__main__":
    _define_flags()
    cli.run_program(main)
