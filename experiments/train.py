r"""Trains one method on one data set and reports per-head test accuracy.

Usage (about 30 s on a 2-core CPU):

    python -m experiments.train --method=gblend_online --dataset=av_digits \
        --epochs=30 --seed=0 --output_dir=runs/train

prints one JSON line per trained model (the fused head's accuracy, every head's
accuracy, the ensemble of heads, the final blend weights) and writes the same to
`<output_dir>/<dataset>_<method>_seed<seed>.json`. `--method=unimodal` trains one
model per modality.
"""

from __future__ import annotations

import dataclasses
import json
import os

from absl import app, flags

from experiments import common
from keras_gblend import io_utils

FLAGS = flags.FLAGS
flags.DEFINE_enum("method", "gblend_online", common.METHODS, "Training method.")
flags.DEFINE_enum("dataset", "av_digits", common.DATASETS, "Built-in data set.")
flags.DEFINE_integer("epochs", common.Config.epochs, "Training epochs.")
flags.DEFINE_integer("seed", 0, "Seed of the split, initialisation and data order.")
flags.DEFINE_string("output_dir", "runs/train", "Where the JSON result is written.")
flags.DEFINE_float("learning_rate", common.Config.learning_rate, "SGD learning rate.")
flags.DEFINE_float("sep_b", common.Config.sep_b, "Synthetic data: modality b's knob.")
flags.DEFINE_list(
    "config", [], "Extra Config overrides as name=value, e.g. super_epoch=5,sep_b=2.5."
)
flags.DEFINE_enum(
    "strategy",
    "default",
    ["default", "mirrored", "multi_worker"],
    "tf.distribute strategy (see README, 'Several GPUs').",
)


def run(method, dataset, config, seed, output_dir, strategy="default"):
    """Trains `method` and writes its result rows; returns them."""
    task = common.load_task(dataset, config, seed=seed)
    rows = common.run_method(
        method, task, config, seed=seed, verbose=2, strategy=strategy
    )
    path = os.path.join(output_dir, f"{dataset}_{method}_seed{seed}.json")
    io_utils.atomic_write_json(
        path, {"dataset": dataset, "config": dataclasses.asdict(config), "rows": rows}
    )
    return rows, path


def main(argv):
    del argv
    settings = dict(
        epochs=FLAGS.epochs, learning_rate=FLAGS.learning_rate, sep_b=FLAGS.sep_b
    )
    settings.update(common.parse_overrides(FLAGS.config))  # --config wins
    config = dataclasses.replace(common.Config(), **settings)
    rows, path = run(
        FLAGS.method,
        FLAGS.dataset,
        config,
        FLAGS.seed,
        FLAGS.output_dir,
        FLAGS.strategy,
    )
    for row in rows:
        summary = {k: row[k] for k in ("method", "seed", "accuracy", "head_accuracy")}
        summary["ensemble_accuracy"] = row["ensemble_accuracy"]
        summary["weights"] = row["weights"]
        print(json.dumps(summary))
    print(f"Wrote {path}")


if __name__ == "__main__":
    app.run(main)
