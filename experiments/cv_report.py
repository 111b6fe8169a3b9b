"""Statistics and the table of the cross-validated comparison (`crossval`)."""

from __future__ import annotations

import math

import numpy as np

# Two-sided 95% quantiles of Student's t, by degrees of freedom.
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365}
_T975.update({8: 2.306, 9: 2.262, 10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086})
_T975.update({25: 2.060, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980})
BASELINES = ("unimodal_image", "naive")


def t_quantile(df):
    """The 0.975 quantile of Student's t with `df` (>= 1) degrees of freedom.

    Tabulated values; between two tabulated `df` the smaller one's (a slightly
    wider, conservative interval); 1.96 beyond 120.

    Example:

    >>> t_quantile(2), t_quantile(11), t_quantile(1000)
    (4.303, 2.228, 1.96)
    """
    if df < 1:
        raise ValueError(f"`df` must be >= 1. Received {df}.")
    return 1.96 if df > 120 else _T975[max(k for k in _T975 if k <= df)]


def paired_ci(differences):
    """Mean and 95% t-interval of paired differences.

    Returns:
        `(mean, low, high)`; `low == high == mean` for a single pair.

    Example:

    >>> [round(v, 3) for v in paired_ci([1.0, 2.0, 3.0])]
    [2.0, -0.484, 4.484]
    """
    d = np.asarray(differences, np.float64)
    mean = float(d.mean())
    if d.size < 2:
        return mean, mean, mean
    half = t_quantile(d.size - 1) * float(d.std(ddof=1)) / math.sqrt(d.size)
    return mean, mean - half, mean + half


def summarise(results, baselines=BASELINES):
    """Per method: mean, paired differences with 95% CIs and wins vs `baselines`.

    Returns:
        `{method: {"n", "mean", "ensemble_mean", "lrs", "vs": {baseline: {...}}}}`
        where each `vs` entry has `mean, low, high, wins, ties, losses` for the
        output head and `ens_mean, ens_low, ens_high` for the ensemble (paired
        with the baseline's output head).
    """
    table = {}
    for r in results:
        table.setdefault(r["method"], {})[(r["fold"], r["seed"])] = r
    summary = {}
    for method, runs in table.items():
        ens = [r["ensemble_accuracy"] for r in runs.values()]
        entry = dict(
            n=len(runs),
            mean=float(np.mean([r["accuracy"] for r in runs.values()])),
            ensemble_mean=None if None in ens else float(np.mean(ens)),
            lrs=sorted({r["lr"] for r in runs.values()}),
            vs={},
        )
        for base in baselines:
            pairs = sorted(set(runs) & set(table.get(base, {})))
            if not pairs:
                continue
            ref = [table[base][p]["accuracy"] for p in pairs]
            d = [runs[p]["accuracy"] - r for p, r in zip(pairs, ref)]
            vs = dict(zip(("mean", "low", "high"), paired_ci(d)), n=len(d))
            vs.update(wins=sum(v > 0 for v in d), ties=d.count(0.0))
            vs["losses"] = len(d) - vs["wins"] - vs["ties"]
            if entry["ensemble_mean"] is not None:
                e = [runs[p]["ensemble_accuracy"] - r for p, r in zip(pairs, ref)]
                vs.update(zip(("ens_mean", "ens_low", "ens_high"), paired_ci(e)))
            entry["vs"][base] = vs
        summary[method] = entry
    return summary


def _ci(vs, prefix):
    mean, low, high = (vs[prefix + k] for k in ("mean", "low", "high"))
    return f"{mean:+.1f} [{low:+.1f}, {high:+.1f}]"


def format_table(summary, baselines=BASELINES):
    """The summary as a markdown table (`legends.crossval_table` adds its legend)."""
    head = "| method | n | lr(s) | output % | ensemble % |"
    rule = "|---|---|---|---|---|"
    for base in baselines:
        head += f" output - {base} [95% CI] (W/T/L) | ensemble - {base} [95% CI] |"
        rule += "---|---|"
    lines = [head, rule]
    for method, e in summary.items():
        ens = "–" if e["ensemble_mean"] is None else f"{e['ensemble_mean']:.1f}"
        line = (
            f"| {method} | {e['n']} | {','.join(str(v) for v in e['lrs'])} | "
            f"{e['mean']:.1f} | {ens} |"
        )
        for base in baselines:
            vs = e["vs"].get(base)
            if vs is None or method == base:
                line += " – | – |"
                continue
            line += f" {_ci(vs, '')} ({vs['wins']}/{vs['ties']}/{vs['losses']}) |"
            line += f" {_ci(vs, 'ens_')} |" if "ens_mean" in vs else " – |"
        lines.append(line)
    return "\n".join(lines)
