r"""Trains one method on one data set and reports per-head test accuracy.

Usage (about 30 s on a 2-core CPU):

    .venv/bin/python -m experiments.train --method=gblend_online \
        --dataset=av_digits --epochs=30 --seed=0 --output_dir=runs/train

prints one JSON line per trained model (the fused head's accuracy, every head's
accuracy, the ensemble of heads, the final blend weights) and writes the same to
`<output_dir>/<dataset>_<method>_seed<seed>.json`. G-Blend methods also write
their state file, by default `<output_dir>/<dataset>_<method>_seed<seed>.state.json`
(`--state_path`), which `python -m tools.plot_blend --history=...` plots.
`--method=unimodal` trains one model per modality.
"""

from __future__ import annotations

import dataclasses
import json
import os

from absl import flags

from experiments import cli, common, methods
from keras_gblend.common import io_utils

FLAGS = flags.FLAGS
flags.DEFINE_enum("method", "gblend_online", list(methods.METHODS), "Method.")
flags.DEFINE_enum("dataset", "av_digits", common.DATASETS, "Built-in data set.")
flags.DEFINE_integer("epochs", common.Config.epochs, "Training epochs.")
flags.DEFINE_integer("seed", 0, "Seed of the split, initialisation and data order.")
flags.DEFINE_string("output_dir", "runs/train", "Where the JSON result is written.")
flags.DEFINE_string(
    "state_path",
    None,
    "G-Blend state file to write (default: <output_dir>/<dataset>_<method>_"
    "seed<seed>.state.json).",
)
flags.DEFINE_float("learning_rate", common.Config.learning_rate, "SGD learning rate.")
flags.DEFINE_float("sep_b", common.Config.sep_b, "Synthetic data: modality b's knob.")
cli.define_shared_flags()


def run(method, dataset, config, seed, output_dir, strategy="default", state_path=None):
    """Trains `method` and writes its result rows; returns `(rows, path)`.

    Args:
        method: A key of `methods.METHODS`.
        dataset: One of `common.DATASETS`.
        config: A `common.Config`.
        seed: Seed of the split, the initialisation and the data order.
        output_dir: Folder of the result JSON.
        strategy: `tf.distribute` strategy name.
        state_path: Where a G-Blend method's state file goes; None: next to the
            result, `<dataset>_<method>_seed<seed>.state.json`.

    Returns:
        The rows of `methods.run_method` and the path of the result JSON.
    """
    task = common.load_task(dataset, config, seed=seed)
    stem = os.path.join(output_dir, f"{dataset}_{method}_seed{seed}")
    rows = methods.run_method(
        method,
        task,
        config,
        seed=seed,
        verbose=2,
        strategy=strategy,
        state_path=state_path or f"{stem}.state.json",
    )
    path = f"{stem}.json"
    io_utils.atomic_write_json(
        path, {"dataset": dataset, "config": dataclasses.asdict(config), "rows": rows}
    )
    return rows, path


def main(argv):
    del argv
    if FLAGS.deterministic:
        common.enable_determinism()
    config = cli.make_config(
        FLAGS.config,
        epochs=FLAGS.epochs,
        learning_rate=FLAGS.learning_rate,
        sep_b=FLAGS.sep_b,
    )
    rows, path = run(
        FLAGS.method,
        FLAGS.dataset,
        config,
        FLAGS.seed,
        FLAGS.output_dir,
        FLAGS.strategy,
        FLAGS.state_path,
    )
    for row in rows:
        keys = ("method", "seed", "accuracy", "head_accuracy", "ensemble_accuracy")
        print(json.dumps({k: row[k] for k in keys + ("weights",)}))
        if row["state_path"]:
            print(f"Wrote {row['state_path']} (plot it: python -m tools.plot_blend)")
    print(f"Wrote {path}")


if __name__ == "__main__":
    cli.run_program(main)
