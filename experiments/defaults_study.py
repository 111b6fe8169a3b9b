r"""What the defaults give: the cross-validated protocol on three regimes.

Usage (RESULTS.md's "What the defaults give"; resumable, one JSONL file per regime):

    python -m experiments.defaults_study --seeds=2 --output_dir=runs/defaults
    python -m experiments.defaults_study --preset=smoke --output_dir=/tmp/smoke
    python -m experiments.defaults_study --recorded_only  # tables of what has run
    python -m experiments.defaults_study --variants=subset_size=500  # + a variant row
    python -m experiments.defaults_study --rows=gblend_default \
        --variants=subset_size=500  # the first block beside its variant

Regimes (`protocol.POOLS`): `av_digits` (mild imbalance: audio memorises the
training speakers), `mfeat` (UCI Multiple Features, K = 6 views: naive fusion
does not fail) and `memorisable` (AV-Digits' images + a weak modality a network
memorises example by example, about 30% alone). Every row runs through
`protocol.run_protocol` and `methods.run_method` with the same folds, seeds and
learning-rate search on `V`; this script only chooses the rows and formats the
tables. `gblend_default` is the README's first block (every setting a package
default); `gblend_online` is the paper preset.

Per regime the table pairs every row with naive fusion, with the best single
modality (the uni-modal row with the best mean TEST accuracy: a conservative
reference, since it is picked on test data) and with the best row, and checks
issue 16's goals for the first block: within 0.5 points of the best row, above
naive fusion with the 95% CI above 0, at most 1 point below the best single
modality.

`--variants` asks what one default is worth: each `name=value` (a
`common.Config` field) adds the row `gblend_default[name=value]`, the first
block with that one setting changed, run through the same protocol (same folds,
seeds and learning-rate search on `V`) into its own file
(`<regime>.<name>=<value>.jsonl`) and paired with the first block as well. A
variant is a candidate default, not a method a user would pick instead: the
goals leave it out. `--rows` runs other rows than the study's (e.g. the first
block alone beside its variants: the table then pairs them, with no goals).
"""

from __future__ import annotations

import dataclasses
import os

from absl import app, flags

from experiments import cli, common, cv_report, legends, methods, protocol

ROWS = [
    "unimodal",
    "naive",
    "dropout",
    "heads_dropout",
    "gblend_offline_recipe",
    "gblend_online",
    "gblend_default_num_heads",
    "gblend_default",
    # Issue 17: the 2 x 2 (with heads_dropout and gblend_online above) and the
    # uni-modal ensembles a user would pick instead.
    "uniform",
    "gblend_dropout",
    "unimodal_ensemble",
]
FIRST_BLOCK = "gblend_default"
PRESETS = {
    "full": dict(seeds=2, grid=(0.01, 0.03), config={}),
    "smoke": dict(seeds=1, grid=(0.03,), config=protocol.SMOKE),
}
FLAGS = flags.FLAGS


def first_per_run(results):
    """`results` with one record per (method, fold, seed): the first.

    `unimodal_ensemble` trains its members as `unimodal` does and reports them
    under the same names; the table keeps `unimodal`'s (listed first).
    """
    seen, kept = set(), []
    for r in results:
        key = (r["method"], r["fold"], r["seed"])
        if key not in seen:
            seen.add(key)
            kept.append(r)
    return kept


def best_single(summary):
    """The uni-modal row with the best mean accuracy."""
    single = [m for m in summary if m.startswith("unimodal_")]
    return max(single, key=lambda m: summary[m]["mean"])


def _ci(vs):
    return f"{vs['mean']:+.1f} [{vs['low']:+.1f}, {vs['high']:+.1f}]"


def best_other(summary):
    """The row other than the first block (and its variants) with the best mean
    accuracy."""
    others = [m for m in summary if m.partition("[")[0] != FIRST_BLOCK]
    return max(others, key=lambda m: summary[m]["mean"])


def goals(summary, single):
    """Issue 16's goals for the first block, as `(goal, measured, met)` rows.

    `summary` pairs every row with naive fusion, `single` and the best other
    row (`cv_report.summarise(results, ("naive", single, best_other))`), so
    every difference is paired over the (fold, seed) pairs both rows ran.
    """
    first, best = summary[FIRST_BLOCK], best_other(summary)
    gap = first["vs"][best]["mean"]
    naive, vs_single = first["vs"]["naive"], first["vs"][single]
    return [
        (f"within 0.5 of the best row ({best})", f"{gap:+.1f}", gap >= -0.5),
        (
            "above naive fusion, CI above 0",
            _ci(naive),
            naive["low"] > 0,
        ),
        (
            f"at most 1 below the best single modality ({single})",
            _ci(vs_single),
            vs_single["mean"] >= -1.0,
        ),
    ]


def report(name, results):
    """The markdown section of one regime: the table and the goals.

    With variant rows (`--variants`), every row is paired with the first block
    too.
    """
    summary = cv_report.summarise(results, ())
    singles = [m for m in summary if m.startswith("unimodal_")]
    single = best_single(summary) if singles else None
    baselines = tuple(m for m in ("naive", single) if m in summary)
    if any("[" in m for m in summary):
        baselines += (FIRST_BLOCK,)
    table = legends.crossval_table(cv_report.summarise(results, baselines), baselines)
    lines = [f"### {name}", "", table, ""]
    if not {FIRST_BLOCK, "naive", single} <= set(summary):
        return "\n".join(lines)  # `--rows` without the goals' references.
    best = best_other(summary)
    summary = cv_report.summarise(results, tuple(dict.fromkeys((*baselines, best))))
    lines += ["| goal for the first block | measured | met? |", "|---|---|---|"]
    lines += [
        f"| {g} | {m} | {'met' if ok else '**missed**'} |"
        for g, m, ok in goals(summary, single)
    ]
    return "\n".join(lines) + "\n"


def _define_flags():
    flags.DEFINE_enum("preset", "full", list(PRESETS), "Setting to start from.")
    flags.DEFINE_list("datasets", list(protocol.POOLS), "Regimes to run.")
    flags.DEFINE_list(
        "rows", ROWS, "Rows of experiments.methods.METHODS (default: the study's)."
    )
    flags.DEFINE_integer("seeds", None, "Seeds per fold (overrides preset).")
    flags.DEFINE_integer("folds", 3, "Folds of whole groups.")
    flags.DEFINE_string("output_dir", "runs/defaults", "One JSONL file per regime.")
    flags.DEFINE_bool(
        "recorded_only", False, "Report what the files hold; train nothing."
    )
    flags.DEFINE_list(
        "variants",
        [],
        "Config overrides name=value: one more row each, the first block with "
        "that setting changed (e.g. subset_size=500), in its own file.",
    )


def variant_rows(override, run, settings=None):
    """The first block's records with one `Config` override, renamed.

    Args:
        override: `name=value` (see `experiments.cli.parse_overrides`).
        run: `run(methods, config, output_suffix) -> records`.
        settings: The preset's `Config` settings the override changes.

    Returns:
        The records, each `method` renamed `gblend_default[name=value]`.

    Example:

    >>> (row,) = variant_rows("subset_size=500", lambda m, c, s: [
    ...     {"method": m[0], "size": c.subset_size, "file": s}])
    >>> row["method"], row["size"], row["file"]
    ('gblend_default[subset_size=500]', 500, '.subset_size=500')
    """
    changed = cli.make_config([override], **(settings or {}))
    records = run([FIRST_BLOCK], changed, f".{override}")
    return [dict(r, method=f"{FIRST_BLOCK}[{override}]") for r in records]


def main(argv):
    del argv
    preset = PRESETS[FLAGS.preset]
    config = dataclasses.replace(common.Config(), **preset["config"])
    for override in FLAGS.variants:  # A typo fails now, not after hours of runs.
        cli.make_config([override])
    unknown = sorted(set(FLAGS.rows) - set(methods.METHODS))
    if unknown:
        raise app.UsageError(
            f"--rows: unknown {unknown}; choose from {sorted(methods.METHODS)}."
        )
    sections = []
    for name in FLAGS.datasets:
        load_pool, standardise = protocol.POOLS[name]
        pool = load_pool()

        def run(rows, config, suffix="", name=name, pool=pool, standardise=standardise):
            return protocol.run_protocol(
                rows,
                pool,
                config,
                run_fn=methods.run_method,
                folds=FLAGS.folds,
                seeds=FLAGS.seeds or preset["seeds"],
                grid=preset["grid"],
                output=os.path.join(FLAGS.output_dir, f"{name}{suffix}.jsonl"),
                name=name,
                standardise=standardise,
                recorded_only=FLAGS.recorded_only,
                log=lambda line: None if FLAGS.recorded_only else print(line),
            )

        results = run(FLAGS.rows, config)
        for override in FLAGS.variants:
            results += variant_rows(override, run, preset["config"])
        sections.append(report(name, first_per_run(results)))
    text = "\n".join(sections)
    with open(os.path.join(FLAGS.output_dir, "defaults.md"), "w") as handle:
        handle.write(text)
    print(text)


if __name__ == "__main__":
    _define_flags()
    app.run(main)
