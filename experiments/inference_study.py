r"""Which output to use at inference, and what happens when a modality is missing.

Usage (about 10 minutes of CPU for 3 seeds on AV-Digits, 2 cores):

    python -m experiments.inference_study --seeds=0,1,2 --output=runs/inference.json

Trains, with `methods.run_method` on the experiments' split of AV-Digits (30
epochs of SGD with momentum), the rows `naive`, `gblend_online` (in-situ
G-Blend), `gblend_dropout` and `unimodal` (one model per modality). For every
multi-head model it fits the `"weighted"` mode's weights on the held-out set `V`
(`GBlendModel.fit_output_weights`), then reports test accuracy of every head and
every output mode, and with the image or the audio removed at test time: the
model's own remaining head (what `predict_output` returns), and its fused head
with the removed modality replaced by its training mean (the usual workaround
when a model has no uni-modal head). Prints two markdown tables (means and
per-seed values) and writes every number to `--output`.
"""

from __future__ import annotations

import json
import os

import numpy as np
from absl import app, flags

from experiments import common, methods
from keras_gblend.common import io_utils
from keras_gblend.model.gblend_model import FUSED
from keras_gblend.model.prediction import MODES

FLAGS = flags.FLAGS
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds of split, initialisation, order.")
flags.DEFINE_integer("epochs", common.Config.epochs, "Training epochs.")
flags.DEFINE_string("dataset", "av_digits", "Built-in data set.")
flags.DEFINE_string("output", "runs/inference.json", "Where the results go.")
flags.DEFINE_list("render", [], "Only print the tables of these result files.")

# Rows of `experiments.methods.METHODS` with several heads.
METHODS = ("naive", "gblend_online", "gblend_dropout")


def run_seed(task, config, seed):
    """Every measurement of one seed, as a dict (`evaluations.missing_modalities`
    of each multi-head row; the uni-modal models' test accuracies)."""
    unimodal = methods.run_method("unimodal", task, config, seed)
    row = {
        "seed": seed,
        "unimodal": {r["method"][len("unimodal_") :]: r["accuracy"] for r in unimodal},
    }
    for method in METHODS:
        (result,) = methods.run_method(
            method, task, config, seed, evaluations=("missing_modalities",)
        )
        measured = dict(result["missing_modalities"])
        missing = measured.pop("missing")
        row[method] = {**measured, "blend_weights": result["weights"]}
        row[method]["missing"] = missing
        print(json.dumps({"seed": seed, "method": method, **row[method]}), flush=True)
    return row


def _cell(rows, path):
    values = []
    for row in rows:
        value = row
        for key in path:
            value = value[key]
        values.append(100 * value)
    return f"{np.mean(values):.1f} ({' / '.join(f'{v:.1f}' for v in values)})"


def _row(label, cells):
    return f"| {label} | " + " | ".join(cells) + " |"


def tables(rows, modalities):
    """The two markdown tables: heads and modes; missing modalities."""
    heads = [*modalities, FUSED]
    modes = [m for m in MODES if m in rows[0][METHODS[0]]["modes"]]
    columns = [f"{h} head" for h in heads] + [f"mode {m}" for m in modes]
    lines = [_row("method", columns), "|---" * (len(columns) + 1) + "|"]
    for method in METHODS:
        cells = [_cell(rows, (method, "heads", h)) for h in heads]
        cells += [_cell(rows, (method, "modes", m)) for m in modes]
        lines.append(_row(method, cells))
    cells = [_cell(rows, ("unimodal", m)) for m in modalities]
    lines.append(_row("uni-modal models", cells + ["-"] * (len(columns) - len(cells))))
    lines += ["", _row("model", [f"{m} removed" for m in modalities])]
    lines.append("|---" * (len(modalities) + 1) + "|")
    for method in METHODS:
        for kind, label in (
            ("output", "own heads"),
            ("fused_imputed", "fused, imputed"),
        ):
            cells = [_cell(rows, (method, "missing", m, kind)) for m in modalities]
            lines.append(_row(f"{method}: {label}", cells))
    kept = [next(n for n in modalities if n != m) for m in modalities]
    lines.append(_row("uni-modal model", [_cell(rows, ("unimodal", k)) for k in kept]))
    return "\n".join(lines)


def main(argv):
    del argv
    if FLAGS.render:
        rows = []
        for path in FLAGS.render:
            with open(path) as handle:
                rows += json.load(handle)["rows"]
        print(tables(rows, tuple(rows[0]["unimodal"])))
        return
    config = common.Config(epochs=FLAGS.epochs)
    task = common.load_task(FLAGS.dataset, config)
    rows = [run_seed(task, config, int(seed)) for seed in FLAGS.seeds]
    os.makedirs(os.path.dirname(FLAGS.output) or ".", exist_ok=True)
    io_utils.atomic_write_json(FLAGS.output, {"rows": rows})
    print(tables(rows, tuple(task.train[0])))


if __name__ == "__main__":
    app.run(main)
