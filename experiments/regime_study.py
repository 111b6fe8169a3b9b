r"""The regime map (issue 17, item 3): when do G-Blend's weights pay off?

Usage (RESULTS.md's "The regime map"; resumable, one JSONL file per knob point):

    python -m experiments.regime_study --output_dir=runs/regimes
    python -m experiments.regime_study --signals=0  # one knob point
    python -m experiments.regime_study --preset=smoke --output_dir=/tmp/smoke
    python -m experiments.regime_study --recorded_only  # tables + plot of what has run

The family (`protocol.pooled_regime`): Multiple Features' `fourier` view (about
80% alone) and a 1024-d memorisable code whose class signal is the knob
`signal`: 4 is a mild imbalance (the code alone is informative), 0 is the
paper's Kinetics regime (the code alone is at chance and a network memorises it
example by example). At every knob point the same rows run through
`protocol.run_protocol` (3 folds of whole groups x 2 seeds) with ONE learning
rate (0.03) for every row: no selection, the same rate for all (fair, and a
third of the cost). Running time (full): about 20 min per knob point on 2
loaded CPU cores; smoke: about a minute.

Output: per knob point the cross-validated table paired with naive fusion and
every head at weight 1 (`legends.crossval_table`), the map along the knob (each
row's mean and the paired differences `DIFFERENCES` with 95% CIs), the signal
table (does a G-Blend weight predict its gain over equal weights?) and the plot
`--plot` (docs/images/regime_map.png).
"""

from __future__ import annotations

import dataclasses
import functools
import os

import numpy as np
from absl import flags

from experiments import cli, common, cv_report, legends, methods, protocol

ROWS = [
    "unimodal_ensemble",  # also the uni-modal rows
    "naive",
    "dropout",
    "uniform",
    "heads_dropout",
    "gblend_online",
    "gblend_dropout",
    "gblend_default",
]
# (row, its twin): G-Blend's weights against equal weights, equal weights
# against naive fusion, the ensembles against the best G-Blend recipe.
DIFFERENCES = [
    ("gblend_online", "uniform"),
    ("gblend_dropout", "heads_dropout"),
    ("gblend_default", "heads_dropout"),
    ("uniform", "naive"),
    ("heads_dropout", "naive"),
    ("ensemble_fit_v", "gblend_default"),
]
# G-Blend rows and their equal-weight twins (the signal table).
TWINS = dict(DIFFERENCES[:3])
PRESETS = {
    "full": dict(signals=(0.0, 1.0, 2.0, 4.0), seeds=2, folds=3, stride=1, config={}),
    # Every 5th example (400), one knob point, 2 folds, 1 epoch, and no extra
    # evaluation of every run (the output modes, which the map does not read):
    # for the tests.
    "smoke": dict(
        signals=(0.0,),
        seeds=1,
        folds=2,
        stride=5,
        config=protocol.SMOKE,
        evaluations=(),
    ),
}
GRID = (0.03,)
FLAGS = flags.FLAGS


def _ci(mean, low, high):
    return f"{mean:+.1f} [{low:+.1f}, {high:+.1f}]"


def paired(results, row, twin):
    """`(mean, low, high, n, wins)` of `row - twin` over their shared runs."""
    acc = {}
    for r in results:
        acc.setdefault(r["method"], {})[(r["fold"], r["seed"])] = r["accuracy"]
    pairs = sorted(set(acc.get(row, {})) & set(acc.get(twin, {})))
    if not pairs:
        return None
    d = [acc[row][p] - acc[twin][p] for p in pairs]
    return (*cv_report.paired_ci(d), len(d), sum(v > 0 for v in d))


def map_table(by_signal):
    """The map along the knob: rows' mean accuracy and `DIFFERENCES` (95% CI).

    Args:
        by_signal: `{signal: run_protocol's results}`.
    """
    names = ["unimodal_code", f"unimodal_{protocol.REGIME_VIEW}"]
    names += [r for r in ROWS if r != "unimodal_ensemble"]
    names += ["ensemble_mean", "ensemble_fit_v"]
    head = "| signal | " + " | ".join(names) + " |"
    lines = [head, "|" + "---|" * (len(names) + 1)]
    for signal, results in sorted(by_signal.items()):
        summary = cv_report.summarise(results, ())
        cells = [
            f"{summary[m]['mean']:.1f} (n={summary[m]['n']})" if m in summary else "–"
            for m in names
        ]
        lines.append(f"| {signal:g} | " + " | ".join(cells) + " |")
    lines += ["", "| signal | " + " | ".join(f"{a} - {b}" for a, b in DIFFERENCES)]
    lines[-1] += " |"
    lines.append("|" + "---|" * (len(DIFFERENCES) + 1))
    for signal, results in sorted(by_signal.items()):
        cells = []
        for a, b in DIFFERENCES:
            p = paired(results, a, b)
            cells.append("–" if p is None else f"{_ci(*p[:3])} ({p[4]}/{p[3]})")
        lines.append(f"| {signal:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def answer(by_signal):
    """Issue 17's question per knob point, as sentences computed from the runs."""
    lines = []
    for signal, results in sorted(by_signal.items()):
        wins = []
        for row, twin in TWINS.items():
            p = paired(results, row, twin)
            if p is not None and p[3] >= 2 and p[0] >= 2.0 and p[1] > 0:
                wins.append(f"{row} - {twin} {_ci(*p[:3])}")
        below = paired(results, "uniform", "naive")
        below = below is not None and below[3] >= 2 and below[2] < 0
        lines.append(
            f"- signal {signal:g}: G-Blend's weights >= 2 points above equal "
            f"weights with the CI above 0: {'; '.join(wins) or 'none'}; equal "
            f"weights below naive fusion (CI below 0): {'yes' if below else 'no'}."
        )
    return "\n".join(lines)


def _ranks(values):
    """Ranks 1..n, ties given their mean rank."""
    values = np.asarray(values, np.float64)
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(1, len(values) + 1)
    for v in np.unique(values):
        ranks[values == v] = ranks[values == v].mean()
    return ranks


def spearman(a, b):
    """Spearman's rank correlation of two equal-length sequences.

    Example:

    >>> round(spearman([1, 2, 3, 4], [10, 30, 20, 40]), 3)
    0.8
    """
    ra, rb = _ranks(a), _ranks(b)
    return float(np.corrcoef(ra, rb)[0, 1])


def weight_features(weights):
    """What a G-Blend run's final weights say, normalised to sum to 1:
    `distance` (L1 from uniform), `smallest` (the smallest weight) and
    `fused` (the fused head's share)."""
    w = np.array(list(weights.values()), np.float64)
    w = w / w.sum()
    return dict(
        distance=float(np.abs(w - 1 / len(w)).sum()),
        smallest=float(w.min()),
        fused=float(weights.get("fused", 0.0) / sum(weights.values())),
    )


def gain_pairs(results, source):
    """Per G-Blend run: its weights' features and its gain over its equal-weight
    twin (`TWINS`) on the same fold and seed, in points."""
    runs = {(r["method"], r["fold"], r["seed"]): r for r in results}
    pairs = []
    for (method, fold, seed), r in sorted(runs.items()):
        twin = runs.get((TWINS.get(method), fold, seed))
        if twin is None or not r.get("weights"):
            continue
        gain = r["accuracy"] - twin["accuracy"]
        pairs.append(dict(source=source, row=method, gain=gain))
        pairs[-1].update(weight_features(r["weights"]))
    return pairs


def signal_report(pairs):
    """Does a weight feature predict G-Blend's gain over equal weights?

    Per feature: Spearman's rho with the gain over every (run, row) pair and
    over the per-(source, row) means, and the gain by tercile of the feature.
    """
    lines = [
        "| feature | rho, runs (n) | rho, (source, row) means (n) | gain by "
        "tercile of the feature: low / mid / high (wins/n) |",
        "|---|---|---|---|",
    ]
    cells = {}
    for p in pairs:
        cells.setdefault((p["source"], p["row"]), []).append(p)
    for feature in ("distance", "smallest", "fused"):
        x = [p[feature] for p in pairs]
        g = [p["gain"] for p in pairs]
        means = [
            (np.mean([p[feature] for p in c]), np.mean([p["gain"] for p in c]))
            for c in cells.values()
        ]
        rho_cells = spearman(*zip(*means)) if len(means) > 2 else float("nan")
        terciles = np.array_split(np.argsort(x, kind="stable"), 3)
        parts = [
            f"{np.mean([g[i] for i in t]):+.1f} ({sum(g[i] > 0 for i in t)}/{len(t)})"
            for t in terciles
        ]
        lines.append(
            f"| {feature} | {spearman(x, g):+.2f} ({len(g)}) | "
            f"{rho_cells:+.2f} ({len(means)}) | {' / '.join(parts)} |"
        )
    return "\n".join(lines)


def point_report(signal, results):
    """The cross-validated table of one knob point (paired with naive, uniform)."""
    baselines = ("naive", "heads_dropout")
    table = cv_report.format_table(cv_report.summarise(results, baselines), baselines)
    return f"### signal {signal:g}\n\n{table}\n"


def plot_map(by_signal, path):
    """Accuracy along the knob (left) and the paired differences (right)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    signals = sorted(by_signal)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    shown = ["unimodal_code", f"unimodal_{protocol.REGIME_VIEW}", "naive"]
    shown += ["uniform", "heads_dropout", "gblend_online", "gblend_dropout"]
    shown += ["gblend_default", "ensemble_fit_v"]
    for name in shown:
        points = []
        for s in signals:
            accs = [r["accuracy"] for r in by_signal[s] if r["method"] == name]
            if accs:
                points.append((s, *cv_report.paired_ci(accs)))
        if points:
            s, mean, low, high = np.array(points).T
            left.errorbar(s, mean, [mean - low, high - mean], capsize=3, label=name)
    left.set(xlabel="class signal of the code (knob)", ylabel="test accuracy %")
    left.legend(fontsize=7)
    for i, (a, b) in enumerate(DIFFERENCES[:4]):
        points = [(s, *paired(by_signal[s], a, b)[:3]) for s in signals]
        points = [p for p in points if p[1] is not None]
        s, mean, low, high = np.array(points).T
        s = s + 0.06 * (i - 1.5)
        right.errorbar(s, mean, [mean - low, high - mean], capsize=3, fmt="o-")
        right.lines[-1].set_label(f"{a} - {b}")
    right.axhline(0, color="k", lw=0.8)
    right.axhline(2, color="gray", lw=0.8, ls="--")
    right.set(xlabel="class signal of the code (knob)", ylabel="points (95% CI)")
    right.legend(fontsize=7)
    fig.suptitle(
        "Regime map: Multiple Features 'fourier' + a memorisable code "
        "(95% CIs over folds x seeds)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(signal, preset, output_dir, recorded_only=False, log=print):
    """The protocol's records at one knob point (trains what its file lacks)."""
    config = dataclasses.replace(common.Config(), **preset["config"])
    load_pool, standardise = protocol.POOLS["regime"]
    x, y, groups = functools.partial(load_pool, signal=signal)()
    rows = slice(None, None, preset["stride"])
    pool = {m: v[rows] for m, v in x.items()}, y[rows], groups[rows]
    run_fn = methods.run_method
    if "evaluations" in preset:
        run_fn = functools.partial(run_fn, evaluations=preset["evaluations"])
    return protocol.run_protocol(
        ROWS,
        pool,
        config,
        run_fn=run_fn,
        folds=preset["folds"],
        seeds=preset["seeds"],
        grid=GRID,
        output=os.path.join(output_dir, f"signal_{signal:g}.jsonl"),
        name=f"regime_signal_{signal:g}",
        standardise=standardise,
        recorded_only=recorded_only,
        log=log,
    )


# The real data sets' ledgers (`experiments.defaults_study`'s, full preset).
REAL_GRID = (0.01, 0.03)


def recorded_real(name, output_dir):
    """The defaults study's recorded G-Blend rows and twins on data set `name`."""
    load_pool, standardise = protocol.POOLS[name]
    return protocol.run_protocol(
        [*TWINS, *TWINS.values()],
        load_pool(),
        common.Config(),
        run_fn=None,
        folds=3,
        seeds=2,
        grid=REAL_GRID,
        output=os.path.join(output_dir, f"{name}.jsonl"),
        name=name,
        standardise=standardise,
        recorded_only=True,
        log=lambda line: None,
    )


def _define_flags():
    flags.DEFINE_enum("preset", "full", list(PRESETS), "Setting to start from.")
    flags.DEFINE_list("signals", None, "Knob points (overrides the preset's).")
    flags.DEFINE_string("output_dir", "runs/regimes", "One JSONL file per point.")
    flags.DEFINE_string("plot", None, "Where to write the map's plot (PNG).")
    flags.DEFINE_list(
        "real", [], "Data sets of --real_dir whose G-Blend runs join the signal."
    )
    flags.DEFINE_string("real_dir", "runs/defaults", "The defaults study's ledgers.")
    flags.DEFINE_bool(
        "recorded_only", False, "Report what the files hold; train nothing."
    )


def main(argv):
    del argv
    preset = PRESETS[FLAGS.preset]
    signals = [float(s) for s in FLAGS.signals or preset["signals"]]
    quiet = FLAGS.recorded_only
    by_signal = {
        s: run(s, preset, FLAGS.output_dir, quiet, lambda line: quiet or print(line))
        for s in signals
    }
    by_signal = {s: r for s, r in by_signal.items() if r}
    sections = [point_report(s, r) for s, r in sorted(by_signal.items())]
    sections += ["### The map", "", map_table(by_signal), "", answer(by_signal)]
    pairs = [p for s, r in by_signal.items() for p in gain_pairs(r, f"signal {s:g}")]
    for name in FLAGS.real:
        pairs += gain_pairs(recorded_real(name, FLAGS.real_dir), name)
    sources = sorted({p["source"] for p in pairs})
    sections += ["", f"### The signal ({', '.join(sources)})", "", signal_report(pairs)]
    text = (
        "\n".join(sections)
        + "\n\n"
        + legends.crossval_legend(
            cv_report.summarise([r for rs in by_signal.values() for r in rs], ()),
            ("naive", "heads_dropout"),
        )
    )
    with open(os.path.join(FLAGS.output_dir, "regimes.md"), "w") as handle:
        handle.write(text)
    if FLAGS.plot and by_signal:
        plot_map(by_signal, FLAGS.plot)
    print(text)


if __name__ == "__main__":
    _define_flags()
    cli.run_program(main)
