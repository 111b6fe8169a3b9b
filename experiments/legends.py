"""What the experiments' tables mean: column legends, methods, conclusions.

`compare` prints `compare_legend` and `compare_conclusions` after its table;
`crossval_table` is `cv_report.format_table` followed by `crossval_legend`. A
method is described by the first sentence of its function's docstring in
`experiments.rows` (`methods.METHODS` names each row by its function's name), so
the legend cannot drift from the code.
"""

from __future__ import annotations

import textwrap

from experiments import cv_report, rows

WIDTH = 88
COMPARE_COLUMNS = {
    "fused (or only) head": "test accuracy of the model's fused head (of a "
    "uni-modal model: its only head), the paper's score",
    "ensemble of heads %": "test accuracy of the mean of every head's "
    "probabilities (models with several heads only)",
    "per seed": "the first column, seed by seed",
    "final blend weights": "each head's loss weight when training ended "
    "(G-Blend methods; they sum to 1)",
    "s / run": "seconds of one run, estimation included",
}
# Result rows that are no method of their own -> the method that yields them.
YIELDED_BY = {
    "ensemble_mean": "unimodal_ensemble",
    "ensemble_fit_v": "unimodal_ensemble",
}
IN_SITU = (
    "gblend_online",
    "gblend_dropout",
    "gblend_recipe",
    "gblend_default",
    "gblend_default_num_heads",
    "gblend_x3",
    "gblend_x3_floor",
    "gblend_x3_stop",
    "gblend_x3_dropout",
    "recipe_paper",
    "recipe_uncertain",
    "recipe_windowed",
    "recipe_robust",
    "recipe_rate",
    "recipe_rate_uncertain",
)
IN_SITU_NOTE = (
    "Why in-situ weights swing between estimates: each estimate is made anew from "
    "one window of noisy T'/V losses, and a head given a small weight then learns "
    "slowly, which shrinks its measured overfitting and wins it a large weight at "
    "the next estimate (`smoothing` damps this; docs/method.md)."
)


def describe(method):
    """The first sentence of `method`'s docstring in `experiments.rows` (a
    result row that is no method of its own: its method's, `YIELDED_BY`, and
    `unimodal`'s for `unimodal_<m>`).

    Example:

    >>> describe("naive")
    "Late fusion trained on the fused head's loss only"
    >>> describe("unimodal_image")
    'One model per modality: its branch and head, trained alone'
    >>> describe("ensemble_mean") == describe("unimodal_ensemble")
    True
    >>> describe("gblend_default[subset_size=500]")
    "The README's first block: every setting a package default, but subset_size=500"
    """
    base, _, changed = method.partition("[")
    if changed:  # A variant of a row (`defaults_study --variants`).
        return f"{describe(base)}, but {changed.rstrip(']')}"
    name = YIELDED_BY.get(method, method)
    if not hasattr(rows, name) and name.startswith("unimodal_"):
        name = "unimodal"
    doc = " ".join((getattr(getattr(rows, name, None), "__doc__", "") or "").split())
    return doc.split(". ")[0].rstrip(".")


def _entries(columns, method_names):
    entries = [("Columns:", None), *columns.items(), ("Methods:", None)]
    entries += [(m, describe(m)) for m in method_names]
    return "\n".join(
        name
        if meaning is None
        else textwrap.fill(
            f"{name}: {meaning}", WIDTH, initial_indent="  ", subsequent_indent="    "
        )
        for name, meaning in entries
    )


def compare_legend(summary):
    """What each column and each method of `compare.markdown_table` means.

    Example:

    >>> print(compare_legend({"naive": {}}).splitlines()[-1])
      naive: Late fusion trained on the fused head's loss only
    """
    return _entries(COMPARE_COLUMNS, summary)


def crossval_legend(summary, baselines):
    """What each column and each method of `cv_report.format_table` means.

    Example:

    >>> print(crossval_legend({"naive": {}}, ("naive",)).splitlines()[1])
      n: runs (speaker folds x seeds)
    """
    base = baselines[0] if len(baselines) == 1 else "<baseline>"
    columns = {
        "n": "runs (speaker folds x seeds)",
        "lr(s)": "the learning rate(s) used: chosen on V per fold from the grid",
        "output %": "test accuracy of the model's output (the fused head; for "
        "gblend_default the output mode it chose on V; a uni-modal model's only "
        "head), mean over the runs",
        "ensemble %": "test accuracy of the mean of every head's probabilities",
        f"output - {base} [95% CI]": f"paired difference in points against {base} "
        "on the same fold and seed: mean and 95% t-interval (an interval that "
        "excludes 0 is a difference the runs resolve)",
        "(W/T/L)": f"runs where the method beat / tied / lost to {base}",
        f"ensemble - {base} [95% CI]": f"the ensemble against {base}'s output",
    }
    if len(baselines) > 1:
        columns["<baseline>"] = f"each of {', '.join(baselines)}, in turn"
    return _entries(columns, summary)


def crossval_table(summary, baselines=cv_report.BASELINES):
    """`cv_report.format_table`'s table followed by its legend (`crossval_legend`)."""
    table = cv_report.format_table(summary, baselines)
    return f"{table}\n\n{crossval_legend(summary, baselines)}"


def compare_conclusions(summary, seeds):
    """Plain sentences of what the comparison shows, computed from its numbers.

    Args:
        summary: `compare.summarise`'s result (`accuracy_mean` per method).
        seeds: Number of seeds behind each mean.

    Returns:
        The sentences, wrapped at 88 columns; with an in-situ G-Blend method,
        then why its weights swing between estimates.

    Example:

    >>> acc = lambda a: {"accuracy_mean": a}
    >>> summary = {"unimodal_a": acc(80.0), "unimodal_b": acc(40.0),
    ...            "naive": acc(75.0), "gblend_online": acc(85.0)}
    >>> print(compare_conclusions(summary, seeds=1))  # doctest: +NORMALIZE_WHITESPACE
    Best: gblend_online, 85.0% test accuracy. Naive fusion (75.0%) is 5.0 points
    below the best single modality (unimodal_a, 80.0%): fusing the modalities
    naively loses accuracy. The best G-Blend method, gblend_online (85.0%), is
    +10.0 points vs naive and +5.0 vs unimodal_a. One seed: differences of a
    point or two are within seed noise.
    Why in-situ weights swing between estimates: each estimate is made anew from
    one window of noisy T'/V losses, and a head given a small weight then learns
    slowly, which shrinks its measured overfitting and wins it a large weight at
    the next estimate (`smoothing` damps this; docs/method.md).
    """
    acc = {m: s["accuracy_mean"] for m, s in summary.items()}
    best = max(acc, key=acc.get)
    sentences = [f"Best: {best}, {acc[best]:.1f}% test accuracy."]
    unimodal = {m: a for m, a in acc.items() if m.startswith("unimodal_")}
    single = max(unimodal, key=unimodal.get) if unimodal else None
    naive = acc.get("naive")
    if naive is not None and single is not None:
        sentences.append(_naive_sentence(naive, single, acc[single]))
    gblend = {m: a for m, a in acc.items() if m.startswith("gblend")}
    if gblend:
        g = max(gblend, key=gblend.get)
        versus = [] if naive is None else [f"{acc[g] - naive:+.1f} points vs naive"]
        if single is not None:
            versus.append(f"{acc[g] - acc[single]:+.1f} vs {single}")
        if versus:
            sentences.append(
                f"The best G-Blend method, {g} ({acc[g]:.1f}%), is "
                f"{' and '.join(versus)}."
            )
    if seeds == 1:
        sentences.append(
            "One seed: differences of a point or two are within seed noise."
        )
    text = textwrap.fill(" ".join(sentences), WIDTH)
    if any(m in acc for m in IN_SITU):
        text += "\n" + textwrap.fill(IN_SITU_NOTE, WIDTH)
    return text


def _naive_sentence(naive, single, single_acc):
    gap = naive - single_acc
    where = f"the best single modality ({single}, {single_acc:.1f}%)"
    if abs(gap) < 1.0:
        return f"Naive fusion ({naive:.1f}%) is level with {where}."
    verdict = (
        "fusing the modalities naively loses accuracy"
        if gap < 0
        else "fusion helps even without re-weighting"
    )
    side = "below" if gap < 0 else "above"
    return f"Naive fusion ({naive:.1f}%) is {abs(gap):.1f} points {side} {where}: " + (
        f"{verdict}."
    )
