"""Measures the baselines of docs/ogm_ge.md: OGM-GE on AV-Digits, methods on mfeat.

Uses the experiments' harness (`experiments.methods.run_method` for the rows of
`METHODS`; their `ogm_ge` row at each `--alphas` value, on the same split) and
prints one JSON line per run, so runs can be appended to a file and summarised
later.

    python -m tools.baselines_bench --study=ogm --seeds=0,1,2
    python -m tools.baselines_bench --study=mfeat --seeds=0,1,2

`ogm` trains OGM-GE (each `--alphas` value) on AV-Digits' trained part and
reports the fused accuracy on `V` (one whole training speaker: the place to pick
alpha) and on the test speakers. `mfeat` runs `--methods` of the harness on the
UCI Multiple Features views (K = 6) plus OGM-GE.
"""

import dataclasses
import json
import time

from absl import flags

from experiments import cli, common, methods, rows
from keras_gblend.model.prediction import accuracy

_FLAGS = flags.FLAGS
flags.DEFINE_enum("study", "ogm", ["ogm", "mfeat"], "What to measure.")
flags.DEFINE_string("seeds", "0,1,2", "Comma-separated seeds.")
flags.DEFINE_string("alphas", "0.1,0.8", "OGM-GE alpha values.")
flags.DEFINE_bool("ge", True, "OGM-GE (True) or OGM (False).")
flags.DEFINE_string(
    "methods", "unimodal,naive,gblend_offline,gblend_online", "mfeat methods."
)
flags.DEFINE_integer("epochs", 30, "Training epochs.")


def _accuracy(model, data, batch_size):
    x, y = data
    return accuracy(model.predict(x, batch_size=batch_size, verbose=0), y)


def run_ogm(task, config, seed, alpha, ge=True):
    """Trains the experiments' `ogm_ge` row at `alpha` (`ge=False`: OGM); returns
    a result row with its accuracy on `V` and on test and its modulation
    coefficients over training."""
    ctx = common.make_context(task, dataclasses.replace(config, ogm_alpha=alpha), seed)
    start = time.perf_counter()
    model = rows.ogm_ge(ctx, ge=ge).model
    history = model.history.history
    coefficients = {
        k[len("coeff_") :]: [
            round(v, 3) for v in history[k][:: max(1, config.epochs // 6)]
        ]
        for k in history
        if k.startswith("coeff_")
    }
    return dict(
        method=f"ogm_ge(alpha={alpha})" if ge else f"ogm(alpha={alpha})",
        seed=seed,
        heldout_accuracy=_accuracy(model, ctx.heldout, config.batch_size),
        accuracy=_accuracy(model, task.test, config.batch_size),
        coefficients=coefficients,
        seconds=time.perf_counter() - start,
    )


def main(argv):
    del argv
    config = common.Config(epochs=_FLAGS.epochs)
    seeds = [int(s) for s in _FLAGS.seeds.split(",")]
    alphas = [float(a) for a in _FLAGS.alphas.split(",")]
    if _FLAGS.study == "ogm":
        task = common.load_task("av_digits", config)
        runs = [("naive", None)] + [("ogm", a) for a in alphas]
    else:
        task = common.load_task("mfeat", config)
        runs = [(m, None) for m in _FLAGS.methods.split(",")]
        runs += [("ogm", a) for a in alphas]
    for seed in seeds:
        for method, alpha in runs:
            if method == "ogm":
                results = [run_ogm(task, config, seed, alpha, _FLAGS.ge)]
            else:
                results = methods.run_method(method, task, config, seed)
            for row in results:
                print(json.dumps(dict(row, study=_FLAGS.study)), flush=True)


if __name__ == "__main__":
    cli.run_program(main)
