r"""Why does the fused head stay near naive fusion when G-Blend is on? Measured.

Usage (about 10 minutes on a 2-core CPU):

    python -m experiments.study_fused --fold=0 --seeds=2 \
        --output=runs/study_fused/results.jsonl

Every variant trains on one cross-validation fold's training speakers minus `V`
and is scored on `V` (whole training speakers, `crossval.selection_task`): the
fold's test speakers are never read, so what is learnt here may choose the
recipe. Variants isolate three suspected causes:

* learning-rate confound: G-Blend weights sum to 1 over K + 1 heads, naive
  fusion puts weight 1 on its single head. With SGD (+ momentum, no weight
  decay), multiplying every loss weight by c is exactly multiplying the learning
  rate by c, so `scale` is implemented as the learning rate times `scale`;
* fused-head under-training: a floor on the fused head's share of the weights
  (`keras_gblend.blend.estimators.fused_floor`);
* memorised audio features reaching the fused head: a fused head that does not
  back-propagate into the branches (`stop_fused`), and the fused head's accuracy
  on `V` when the audio inputs are shuffled across examples (how much it leans on
  audio).

`run_variant` has the harness's signature, so `crossval.run_protocol` runs these
variants too (`--run_fn` of crossval is this module's `run_variant`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time

import keras
import numpy as np
from absl import app, flags

from experiments import common, crossval, methods
from keras_gblend import GBlendCallback, build_gblend_model
from keras_gblend.blend import estimators
from keras_gblend.model.gblend_model import FUSED

# name -> spec: gblend (in-situ callback on), scale (loss-weight scale, applied
# as a learning-rate factor), weights (fixed weights when gblend is off),
# fused_floor (least share of the fused head), stop_fused, dropout.
VARIANTS = {
    "naive": dict(weights="naive"),
    "naive_lr_third": dict(weights="naive", scale=1 / 3),
    "naive_lr_x3": dict(weights="naive", scale=3.0),
    "uniform": dict(weights="uniform"),
    "uniform_x3": dict(weights="uniform", scale=3.0),
    "gblend": dict(gblend=True),
    "gblend_x3": dict(gblend=True, scale=3.0),
    "gblend_x3_floor": dict(gblend=True, scale=3.0, fused_floor=1 / 3),
    "gblend_x3_stop": dict(gblend=True, scale=3.0, stop_fused=True),
    "dropout": dict(weights="naive", dropout=True),
    "dropout_x3": dict(weights="naive", dropout=True, scale=3.0),
    "gblend_dropout": dict(gblend=True, dropout=True),
    "gblend_x3_dropout": dict(gblend=True, scale=3.0, dropout=True),
    # "heads": scale = number of heads (K + 1), fused floor = 1 / (K + 1).
    "gblend_recipe": dict(
        gblend=True, scale="heads", fused_floor="heads", dropout=True
    ),
    "uniform_heads_dropout": dict(weights="uniform", scale="heads", dropout=True),
}
RECIPE = VARIANTS["gblend_recipe"]
# The recipe with each estimator of `keras_gblend.blend.estimators` ("recipe_paper" is
# `gblend_recipe` run through the estimator API).
VARIANTS.update(
    {
        f"recipe_{name}": dict(RECIPE, estimator=name)
        for name in ("paper", "uncertain", "windowed", "robust")
    }
)
# The recipe with each head's deltas per unit of its weight in force
# (`estimators.rate_normalised`).
VARIANTS.update(
    recipe_rate=dict(RECIPE, rate=True),
    recipe_rate_uncertain=dict(RECIPE, rate=True, estimator="uncertain"),
)


def _stop_gradient_concat(features):
    return keras.layers.Concatenate(name="fusion")(
        [keras.ops.stop_gradient(f) for f in features]
    )


def _record(estimate):
    """An estimate as plain JSON data (`state.Estimate` or a dict)."""
    if not dataclasses.is_dataclass(estimate):
        return estimate
    return json.loads(json.dumps(dataclasses.asdict(estimate), default=_plain))


def _plain(value):
    return value.tolist() if isinstance(value, np.ndarray) else float(value)


def _accuracy(probs, y):
    return float(np.mean(np.argmax(probs, -1) == y))


def run_variant(variant, task, config=None, seed=0, verbose=0):
    """Trains one variant of `VARIANTS`; rows as `methods.run_method` returns.

    Extra row fields: `audio_shuffled_accuracy` (the output head's accuracy
    when the test split's audio is permuted across examples; `None` without an
    `"audio"` modality).

    Raises:
        ValueError: If `variant` is unknown.
    """
    if variant not in VARIANTS:
        raise ValueError(
            f"`variant` must be one of {list(VARIANTS)}. Received {variant!r}."
        )
    spec = VARIANTS[variant]
    config = config or common.Config()
    keras.utils.set_random_seed(seed)
    start = time.perf_counter()
    train, subset, heldout = common.split(task, config, seed)
    dropout = config.dropout if spec.get("dropout") else 0.0
    branches = common.make_branches(task, config, dropout=dropout)
    model = build_gblend_model(
        branches,
        task.num_classes,
        dropout=dropout,
        fusion=_stop_gradient_concat if spec.get("stop_fused") else "concat",
    )
    heads = model.head_names
    if not spec.get("gblend"):
        naive = spec["weights"] == "naive"
        model.set_blend_weights(
            {h: float(h == FUSED) if naive else 1 / len(heads) for h in heads}
        )
    scale, floor = spec.get("scale", 1.0), spec.get("fused_floor")
    scale = len(heads) if scale == "heads" else scale
    floor = 1 / len(heads) if floor == "heads" else floor
    lr = config.learning_rate * scale
    model.compile(
        optimizer=keras.optimizers.SGD(lr, momentum=config.momentum),
        loss="sparse_categorical_crossentropy",
    )
    callbacks, estimator = [], estimators.get(spec.get("estimator", "paper"))
    if spec.get("rate"):
        estimator = estimators.rate_normalised(estimator)
    if spec.get("gblend"):
        callbacks.append(
            GBlendCallback(
                subset,
                heldout,
                warmup_epochs=config.warmup_epochs,
                super_epoch=config.super_epoch,
                min_weight=config.min_weight,
                preset="paper",  # The scale and the floor are this spec's.
                estimator=estimators.fused_floor(estimator, floor)
                if floor
                else estimator,
                verbose=0,
            )
        )
    model.fit(
        *train,
        epochs=config.epochs,
        batch_size=config.batch_size,
        callbacks=callbacks,
        verbose=verbose,
    )
    x, y = task.test
    probs = model.predict(x, batch_size=256, verbose=0)
    shuffled = None
    if "audio" in x:
        perm = np.random.default_rng(seed).permutation(len(y))
        xs = dict(x, audio=x["audio"][perm])
        shuffled = _accuracy(model.predict(xs, batch_size=256, verbose=0)[FUSED], y)
    ensemble = np.mean([probs[h] for h in model.head_names], axis=0)
    return [
        dict(
            method=variant,
            seed=seed,
            accuracy=_accuracy(probs[FUSED], y),
            head_accuracy={h: _accuracy(p, y) for h, p in probs.items()},
            ensemble_accuracy=_accuracy(ensemble, y),
            audio_shuffled_accuracy=shuffled,
            weights=model.get_blend_weights(),
            weight_history=[_record(e) for e in callbacks[0].estimates]
            if spec.get("gblend")
            else [],
            seconds=time.perf_counter() - start,
        )
    ]


def run_any(method, task, config=None, seed=0):
    """`run_variant` for `VARIANTS`, `methods.run_method` for the harness's methods."""
    if method in VARIANTS:
        return run_variant(method, task, config, seed)
    return methods.run_method(method, task, config or common.Config(), seed)


def format_study(rows):
    """Markdown table of study rows: per variant, means over seeds (in %).

    Columns: output head, every head, heads' ensemble, output head with the
    audio shuffled, and the final weights.
    """
    by = {}
    for r in rows:
        by.setdefault(r["method"], []).append(r)
    lines = [
        "| variant | n | output % | heads % | ensemble % | audio shuffled % | weights |",  # noqa: E501
        "|---|---|---|---|---|---|---|",
    ]
    for name, rs in by.items():

        def mean(get, rs=rs):
            vals = [get(r) for r in rs]
            return "–" if None in vals else f"{100 * np.mean(vals):.1f}"

        heads = " ".join(
            f"{h} {mean(lambda r, h=h: r['head_accuracy'][h])}"
            for h in rs[0]["head_accuracy"]
        )
        weights = " ".join(
            f"{h} {np.mean([r['weights'][h] for r in rs]):.2f}"
            for h in (rs[0]["weights"] or {})
        )
        lines.append(
            f"| {name} | {len(rs)} | {mean(lambda r: r['accuracy'])} | {heads} | "
            f"{mean(lambda r: r.get('ensemble_accuracy'))} | "
            f"{mean(lambda r: r.get('audio_shuffled_accuracy'))} | {weights} |"
        )
    return "\n".join(lines)


FLAGS = flags.FLAGS


def define_flags():
    """Defines the script's flags (only when run as a script)."""
    flags.DEFINE_list(
        "variants", ["unimodal", *VARIANTS], "Variants (or harness methods) to run."
    )
    flags.DEFINE_integer(
        "fold", 0, "Cross-validation fold whose training speakers are used."
    )
    flags.DEFINE_integer("folds", 3, "Number of speaker folds.")
    flags.DEFINE_integer("seeds", 2, "Seeds 0..n-1.")
    flags.DEFINE_list("config", [], "Config overrides as name=value.")
    flags.DEFINE_string("output", "runs/study_fused/results.jsonl", "Resumable JSONL.")


def main(argv):
    del argv
    config = dataclasses.replace(
        common.Config(), **common.parse_overrides(FLAGS.config)
    )
    pool = crossval.pooled_av_digits()
    speakers = crossval.speaker_folds(pool[2], FLAGS.folds)[FLAGS.fold]
    task = crossval.selection_task(crossval.fold_task(pool, speakers), config, 0)
    header = dict(config=dataclasses.asdict(config), fold=FLAGS.fold, study="fused")
    ledger = crossval.Ledger(FLAGS.output, header)
    start = time.perf_counter()
    for variant in FLAGS.variants:
        for seed in range(FLAGS.seeds):
            rows = ledger.run(
                ("study", FLAGS.fold, variant, config.learning_rate, seed),
                functools.partial(run_any, variant, task, config, seed),
            )
            for r in rows:
                heads = " ".join(
                    f"{h} {100 * a:.1f}" for h, a in r["head_accuracy"].items()
                )
                shuf = r.get("audio_shuffled_accuracy")
                print(
                    f"[{time.perf_counter() - start:5.0f} s] {r['method']} seed {seed}:"
                    f" V acc {100 * r['accuracy']:.1f} | heads {heads} | ens "
                    f"{100 * (r['ensemble_accuracy'] or 0):.1f} | audio shuffled "
                    f"{'-' if shuf is None else f'{100 * shuf:.1f}'} | weights "
                    + " ".join(f"{h} {w:.2f}" for h, w in (r["weights"] or {}).items()),
                    flush=True,
                )
    rows = [r for rec in ledger.records.values() for r in rec.get("rows", [])]
    print(format_study(rows))


if __name__ == "__main__":
    define_flags()
    app.run(main)
