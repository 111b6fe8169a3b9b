"""Plots of what G-Blend did: weights, dG / dO, per-head losses, weights per run.

The one place that draws G-Blend histories; `tools/plot_blend.py` (command line)
and `experiments/compare.py` (the comparison's weights figure) call it. Every
function takes a `keras_gblend.report.history.BlendHistory` (`read_history` reads one
from the callback's state file, a `CSVLogger` CSV or a Keras `History`) and
writes a PNG. matplotlib is imported on first use (the `plot` extra); no pyplot
state is touched, so it is safe inside other programs.
"""

from __future__ import annotations

import os

import numpy as np

from keras_gblend.report.history import BlendHistory, read_history

EPOCH_LABEL = "epoch (epochs completed)"


def _matplotlib():
    """Imports matplotlib on first use (the `plot` extra)."""
    try:
        import matplotlib
        import matplotlib.ticker  # noqa: F401  (used as matplotlib.ticker)
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(
            "Plotting needs matplotlib: pip install 'keras_gblend[plot]' "
            "(or `make demo`, which installs it into .venv)."
        ) from error
    return matplotlib, Figure


def _figure(**kwargs):
    # A bare Figure (no pyplot): no global backend or figure state is touched.
    return _matplotlib()[1](**kwargs)


def _colors(history):
    """One colour per head, the same in every figure; the fused head is grey."""
    cycle = _matplotlib()[0].rcParams["axes.prop_cycle"].by_key()["color"]
    return {
        h: "dimgray" if h == "fused" else cycle[i % len(cycle)]
        for i, h in enumerate(history.head_names)
    }


def _last_epoch(history):
    return max((int(e.max()) for e in history.epochs.values() if e.size), default=1)


def _finish(fig, caption, path, dpi):
    fig.text(0.5, 0.01, caption, ha="center", va="bottom", fontsize=8.5, wrap=True)
    fig.savefig(path, dpi=dpi)
    return path


def _estimate_lines(ax, history):
    for epoch in history.epochs.get("dG", []):
        ax.axvline(epoch, color="black", linestyle=":", linewidth=0.8, alpha=0.5)


def plot_weights(history, path, dpi=100):
    """Draws the heads' loss weights over training as stacked bands.

    A weight recorded after epoch `e` is drawn over `[e, e + 1]` and until the
    next record: it is the weight the next epochs train with. The bands of all
    heads stack to 1.

    Args:
        history: A `keras_gblend.report.history.BlendHistory` with `"weight"`.
        path: Output PNG path.
        dpi: Resolution.

    Returns:
        `path`.

    Raises:
        ValueError: If the history has no weights.
    """
    if "weight" not in history.values:
        raise ValueError("The history has no blend weights to plot.")
    epochs, values = history.epochs["weight"], history.values["weight"]
    end = max(_last_epoch(history), int(epochs.max())) + 1
    colors = _colors(history)
    fig = _figure(figsize=(7, 4.2))
    ax = fig.subplots()
    fig.subplots_adjust(left=0.1, right=0.78, top=0.9, bottom=0.22)
    x = np.append(epochs, end)
    ys = np.vstack([values, values[-1:]]).T
    bands = ax.stackplot(
        x,
        ys,
        step="post",
        colors=[colors[h] for h in history.head_names],
        labels=history.head_names,
        alpha=0.85,
        edgecolor="white",
        linewidth=0.5,
    )
    _estimate_lines(ax, history)
    ax.set_xlim(0, end)
    ax.set_ylim(0, 1)
    ax.set_xlabel(EPOCH_LABEL)
    ax.set_ylabel("loss weight (stacked, sums to 1)")
    ax.set_title("G-Blend loss weight per head")
    ax.legend(
        bands[::-1],
        history.head_names[::-1],
        title="head",
        loc="upper left",
        bbox_to_anchor=(1.01, 1),
    )
    caption = (
        "Band height: the weight of each head's loss in the epochs after the given "
        "one. Dotted lines: estimate epochs (weights change there)."
    )
    if epochs[0] > 1:
        caption += f" Before epoch {epochs[0]}: initial weights, not recorded here."
    return _finish(fig, caption, path, dpi)


def plot_deltas(history, path, dpi=100):
    """Draws dG, dO and OGR per head at every estimate, with zero lines.

    Args:
        history: A `BlendHistory` with `"dG"` and `"dO"` (and optionally
            `"ogr"`).
        path: Output PNG path.
        dpi: Resolution.

    Returns:
        `path`.

    Raises:
        ValueError: If the history has no estimates.
    """
    if "dG" not in history.values or "dO" not in history.values:
        raise ValueError("The history has no dG / dO estimates to plot.")
    colors = _colors(history)
    panels = [
        ("dG", r"generalisation $dG = L^V_N - L^V_{N+n}$", r"$dG$ ($\Delta$ loss)"),
        (
            "dO",
            r"overfitting change $dO = O_{N+n} - O_N$, $O = L^V - L^{T'}$",
            r"$dO$ ($\Delta$ loss)",
        ),
    ]
    if "ogr" in history.values:
        panels.append(("ogr", r"$OGR = |dO / dG|$ (lower is better)", "OGR (log)"))
    fig = _figure(figsize=(7, 2.3 * len(panels) + 1.2))
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    fig.subplots_adjust(left=0.13, right=0.8, top=0.89, bottom=0.14, hspace=0.4)
    for ax, (quantity, title, ylabel) in zip(axes, panels):
        epochs, values = history.epochs[quantity], history.values[quantity]
        if quantity == "ogr":
            values = np.where(np.isfinite(values) & (values > 0), values, np.nan)
            ax.set_yscale("log")
            ticker = _matplotlib()[0].ticker
            ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            ax.yaxis.set_minor_formatter(ticker.NullFormatter())
        else:
            ax.axhline(0, color="0.3", linewidth=1)
        for column, head in enumerate(history.head_names):
            ax.plot(epochs, values[:, column], "o-", color=colors[head], label=head)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0].legend(title="head", loc="upper left", bbox_to_anchor=(1.01, 1))
    axes[-1].set_xlabel(EPOCH_LABEL + " at the end of each estimate window")
    axes[-1].set_xlim(0, _last_epoch(history) + 0.5)
    fig.suptitle("G-Blend estimates per head", fontsize=12)
    caption = (
        "dG > 0: held-out loss fell (the head generalised); dG <= 0 gets only the "
        "minimum weight. dO > 0: the held-out/train gap grew. Weight ~ dG / dO^2."
    )
    return _finish(fig, caption, path, dpi)


def plot_losses(history, path, dpi=100):
    """Draws each head's loss on `T'` and on `V` at every measurement.

    Args:
        history: A `BlendHistory` with `"train_loss"` and `"heldout_loss"`.
        path: Output PNG path.
        dpi: Resolution.

    Returns:
        `path`.

    Raises:
        ValueError: If the history has no per-head losses.
    """
    if "train_loss" not in history.values or "heldout_loss" not in history.values:
        raise ValueError(
            "The history has no per-head T' / V losses (gblend_train_loss_<head>, "
            "gblend_heldout_loss_<head>). CSVLogger fixes its columns at the first "
            "epoch, so its file has them only when the first epoch was a "
            "measurement epoch: plot the callback's state JSON instead."
        )
    colors = _colors(history)
    heads = history.head_names
    fig = _figure(figsize=(2.6 * len(heads) + 1, 3.6))
    axes = fig.subplots(1, len(heads), sharey=True, squeeze=False)[0]
    fig.subplots_adjust(left=0.08, right=0.98, top=0.8, bottom=0.24, wspace=0.08)
    last = _last_epoch(history)
    for column, (ax, head) in enumerate(zip(axes, heads)):
        for quantity, style, face, label in (
            ("train_loss", "o-", colors[head], "$T'$: train subset"),
            ("heldout_loss", "s--", "white", "$V$: held out"),
        ):
            epochs, values = history.epochs[quantity], history.values[quantity]
            ax.plot(
                epochs,
                values[:, column],
                style,
                color=colors[head],
                markerfacecolor=face,
                markersize=5,
                label=label,
            )
        ax.set_title(f"head: {head}")
        ax.set_xlabel(EPOCH_LABEL)
        ax.set_xlim(-0.5, last + 0.5)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper right")
    axes[0].set_ylabel("loss (mean per example)")
    fig.suptitle(
        "Per-head loss on $T'$ (solid) and $V$ (dashed), inference mode", fontsize=12
    )
    caption = (
        "The gap V - T' is the overfitting O. G-Blend compares two measurements "
        "(the ends of an estimate window) to get dG and dO."
    )
    return _finish(fig, caption, path, dpi)


def plot_all(history, output_dir, prefix="gblend_", dpi=100):
    """Writes every plot the history has data for.

    Args:
        history: A `BlendHistory`, or anything `read_history` accepts.
        output_dir: Folder for the PNGs (created).
        prefix: File-name prefix.
        dpi: Resolution.

    Returns:
        A dict from plot name (`"weights"`, `"deltas"`, `"losses"`) to the path
        written, and `skipped`: a dict from plot name to why it was not drawn.

    Example:

    >>> import tempfile
    >>> h = BlendHistory(("a", "fused"), {"weight": np.array([2, 5])},
    ...                  {"weight": np.array([[0.3, 0.7], [0.6, 0.4]])})
    >>> paths, skipped = plot_all(h, tempfile.mkdtemp())
    >>> sorted(paths), sorted(skipped)
    (['weights'], ['deltas', 'losses'])
    """
    if not isinstance(history, BlendHistory):
        history = read_history(history)
    os.makedirs(output_dir, exist_ok=True)
    paths, skipped = {}, {}
    for name, plot in (
        ("weights", plot_weights),
        ("deltas", plot_deltas),
        ("losses", plot_losses),
    ):
        try:
            paths[name] = plot(
                history, os.path.join(output_dir, f"{prefix}{name}.png"), dpi=dpi
            )
        except ValueError as error:
            skipped[name] = str(error)
    return paths, skipped


def plot_weight_runs(runs, path, num_epochs=None, dpi=90):
    """Draws blend weights over training, one panel per method, one line per run.

    Args:
        runs: A dict from method name to a list of `BlendHistory`s, one per run
            (those without `"weight"` are left out). A history with a single
            record (fixed weights) is drawn flat up to `num_epochs`.
        path: Output PNG path.
        num_epochs: Length of training, for fixed weights.
        dpi: Resolution.

    Returns:
        `path`, or None if no history has weights.

    Example:

    >>> import os, tempfile
    >>> h = BlendHistory(("a", "fused"), {"weight": np.array([0])},
    ...                  {"weight": np.array([[0.2, 0.8]])})
    >>> path = os.path.join(tempfile.mkdtemp(), "w.png")
    >>> plot_weight_runs({"offline": [h]}, path, num_epochs=5) == path
    True
    """
    runs = {
        method: [h for h in histories if "weight" in h.values]
        for method, histories in runs.items()
    }
    runs = {method: histories for method, histories in runs.items() if histories}
    if not runs:
        return None
    fig = _figure(figsize=(5 * len(runs), 3.6))
    axes = fig.subplots(1, len(runs), squeeze=False)[0]
    for ax, (method, histories) in zip(axes, runs.items()):
        for number, history in enumerate(histories):
            epochs, values = history.epochs["weight"], history.values["weight"]
            if len(epochs) == 1 and num_epochs:
                epochs, values = np.append(epochs, num_epochs), np.repeat(values, 2, 0)
            for i, head in enumerate(history.head_names):
                ax.plot(
                    epochs,
                    values[:, i],
                    marker="o",
                    color=f"C{i}",
                    alpha=0.7,
                    label=head if number == 0 else None,
                )
        ax.set(title=method, xlabel=EPOCH_LABEL, ylabel="blend weight")
        ax.set_ylim(-0.02, 1.02)
        ax.legend()
    fig.suptitle("G-Blend weights over training (one line per run)")
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    return path
