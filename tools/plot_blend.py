"""Plots what G-Blend did during training: weights, dG / dO, per-head losses.

Reads a history written by `GBlendCallback` (its `state_path` JSON; `make demo`
and `python -m experiments.train` write one per G-Blend run) or by
`keras.callbacks.CSVLogger` placed after the callback, and writes three PNGs
with `keras_gblend.report.plot.plot_all`:

- `<prefix>weights.png`: each head's loss weight over training.
- `<prefix>deltas.png`: `dG`, `dO` and `OGR = |dO / dG|` per head at every
  estimate, with a zero line.
- `<prefix>losses.png`: per head, the loss on the training subset `T'` and on the
  held-out split `V` at every measurement.

Usage (from the repository root, after `make demo`; about 5 s, most of it
importing TensorFlow):

    .venv/bin/python -m tools.plot_blend \\
        --history=runs/demo/states/gblend_online_seed0.json --output_dir=runs/demo/plots

It prints the path of every image it writes.
"""

import sys
from pathlib import Path

from absl import app, flags

from experiments import cli
from keras_gblend.report.plot import plot_all


def _define_flags():
    """Defines the command's flags (only when run as a script, not on import)."""
    flags.DEFINE_string(
        "history", None, "Callback state JSON or CSVLogger CSV.", required=True
    )
    flags.DEFINE_string(
        "output_dir", None, "Folder for the PNG files (created).", required=True
    )
    flags.DEFINE_string("prefix", "gblend_", "File-name prefix of the PNGs.")
    flags.DEFINE_integer("dpi", 100, "Resolution of the PNGs.")


def main(argv):
    del argv
    values = flags.FLAGS
    if not Path(values.history).is_file():
        raise app.UsageError(
            f"--history: no file {values.history!r}. `make demo` writes "
            "runs/demo/states/<method>_seed0.json; `python -m experiments.train` "
            "writes <output_dir>/<dataset>_<method>_seed<seed>.state.json."
        )
    try:
        paths, skipped = plot_all(
            values.history, values.output_dir, prefix=values.prefix, dpi=values.dpi
        )
    except ValueError as error:  # Not a history (e.g. a results JSON).
        raise app.UsageError(
            f"--history={values.history!r} is not a G-Blend history: {error} Give "
            "a state file (runs/demo/states/<method>_seed0.json) or a CSVLogger CSV."
        ) from None
    for path in paths.values():
        print(path)
    for name, reason in skipped.items():
        print(f"skipped {name}: {reason}", file=sys.stderr)
    if not paths:
        raise app.UsageError(f"Nothing to plot in {values.history!r}.")


if __name__ == "__main__":
    _define_flags()
    cli.run_program(main)
