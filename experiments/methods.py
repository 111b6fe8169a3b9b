"""The methods of the comparison, as a table of small functions, and their runner.

A method is a function `method(ctx) -> Outcome` (or an iterable of `Outcome`s,
for methods that train several models): it builds and trains, nothing else.
`ctx` is a `Context`: the task, the `Config`, the seed and the split into the
trained part, `T'` and `V`. `run_method` makes the context, calls the method in
the strategy's scope, and turns every `Outcome` into one result row: the same
test evaluation for every method, plus one field per entry of `EVALUATIONS`.

Extending it (one small function, one table entry each):

- a method: `def ogm_ge(ctx): ...; return Outcome(model)` and
  `METHODS["ogm_ge"] = ogm_ge`; variants of a method are its function called
  with other arguments (`gblend_exact` is `gblend_online(ctx, mode="exact")`);
- a result field for every fused model: `def modes(model, ctx): return {...}`
  and `EVALUATIONS["modes"] = modes`; the row gets `row["modes"]` (JSON values);
- a field only one method knows: `Outcome(model, extra={"name": value})`.
"""

from __future__ import annotations

import dataclasses
import os
import time

import keras
import numpy as np

from experiments import common
from keras_gblend import FUSED, GBlendCallback, GBlendModel
from keras_gblend.blend import estimators
from keras_gblend.blend.head_copies import estimate_offline
from keras_gblend.model import prediction


@dataclasses.dataclass(frozen=True)
class Context:
    """Everything a method needs: what to train on, with which settings.

    Attributes:
        task: The `common.Task`.
        config: The `common.Config`.
        seed: Seed of the split, the initialisation and the data order.
        train: The trained part of the training split, an `(x, y)` pair.
        subset: `T'`, a fixed subset of `train`.
        heldout: `V`, held out from the training split (never trained on).
        method: Name of the method being run.
        verbose: Keras verbosity of `fit` and of the G-Blend callback.
        state_path: Where a G-Blend method writes its state file, or None.
    """

    task: common.Task
    config: common.Config
    seed: int
    train: tuple
    subset: tuple
    heldout: tuple
    method: str = ""
    verbose: int = 0
    state_path: str | None = None

    def fresh_state_path(self):
        """`state_path` with any file left there removed (the callback would
        resume from it), or None."""
        if self.state_path and os.path.exists(self.state_path):
            os.remove(self.state_path)
        return self.state_path


# `Outcome.output` for "the model's output mode" rather than one head.
OUTPUT = "output"


@dataclasses.dataclass
class Outcome:
    """One trained model, as a method returns it.

    Attributes:
        model: A `GBlendModel`, or a single-output head model (uni-modal).
        name: Row name; None: the method's name.
        output: The head the model answers with (its `accuracy`), or `OUTPUT`:
            the model's output mode (`predict_output`, e.g. chosen on `V`).
        state_path: The G-Blend state file written while training, if any.
        weights: Blend weights to report; None: the model's (for `GBlendModel`).
        extra: Method-specific result fields, copied into the row.
    """

    model: keras.Model
    name: str | None = None
    output: str = FUSED
    state_path: str | None = None
    weights: dict | None = None
    extra: dict = dataclasses.field(default_factory=dict)


def make_context(task, config, seed=0, **kwargs):
    """Seeds every RNG with `seed`, splits the task, returns the `Context`.

    Example:

    >>> from keras_gblend import data
    >>> ds = data.make_synthetic(num_train=60, num_test=10, dim_b=4, seed=0)
    >>> task = common.Task("synthetic", ds.train, ds.test, None, ds.num_classes)
    >>> ctx = make_context(task, common.Config(subset_size=20))
    >>> len(ctx.train[1]) + len(ctx.heldout[1]), len(ctx.subset[1])
    (60, 20)
    """
    keras.utils.set_random_seed(seed)
    train, subset, heldout = common.split(task, config, seed)
    return Context(task, config, seed, train, subset, heldout, **kwargs)


def _fit(ctx, model, callbacks=(), **kwargs):
    model.fit(
        *ctx.train,
        epochs=ctx.config.epochs,
        batch_size=ctx.config.batch_size,
        callbacks=list(callbacks),
        verbose=ctx.verbose,
        **kwargs,
    )
    return model


def _naive_model(ctx, dropout=0.0):
    model = common.build_model(ctx.task, ctx.config, dropout=dropout)
    model.set_blend_weights({h: float(h == FUSED) for h in model.head_names})
    return model


def train_head(ctx, model, head, epochs):
    """Trains `model.head_model(head)` alone (SGD, like the model); returns it."""
    sub = model.head_model(head)
    sub.compile(
        optimizer=common._optimizer(ctx.config),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    x, y = ctx.train
    inputs = {m: x[m] for m in sub.input}
    sub.fit(
        inputs, y, epochs=epochs, batch_size=ctx.config.batch_size, verbose=ctx.verbose
    )
    return sub


def unimodal(ctx):
    """One model per modality: its branch and head, trained alone."""
    model = common.build_model(ctx.task, ctx.config)
    for modality in model.modalities:
        sub = train_head(ctx, model, modality, ctx.config.epochs)
        yield Outcome(sub, name=f"unimodal_{modality}", output=modality)


def naive(ctx, dropout=0.0):
    """Late fusion trained on the fused head's loss only."""
    return Outcome(_fit(ctx, _naive_model(ctx, dropout)))


def dropout(ctx):
    """Naive fusion with dropout in the encoders and before the heads."""
    return naive(ctx, dropout=ctx.config.dropout)


def early_stopping(ctx):
    """Naive fusion stopped on the fused head's loss on `V` (best weights)."""
    stop = keras.callbacks.EarlyStopping(
        monitor="val_fused_loss",
        mode="min",
        patience=ctx.config.patience,
        restore_best_weights=True,
    )
    model = _fit(ctx, _naive_model(ctx), [stop], validation_data=ctx.heldout)
    return Outcome(model)


def pretrain(ctx):
    """Naive fusion whose branches were first trained uni-modally (half the epochs)."""
    model = _naive_model(ctx)
    for modality in model.modalities:
        train_head(ctx, model, modality, ctx.config.epochs // 2)
    return Outcome(_fit(ctx, model))


def uniform(ctx):
    """Every head's loss with the same weight (auxiliary heads)."""
    return Outcome(_fit(ctx, common.build_model(ctx.task, ctx.config)))


def offline_estimate(ctx, model):
    """The paper's offline G-Blend estimate for `model` (`estimate_offline`)."""
    return estimate_offline(
        model,
        ctx.train,
        ctx.subset,
        ctx.heldout,
        epochs=ctx.config.offline_epochs,
        batch_size=ctx.config.batch_size,
        min_weight=ctx.config.min_weight,
    )


def gblend_offline(ctx):
    """Weights estimated once before training, then fixed (the paper's main recipe)."""
    model = common.build_model(ctx.task, ctx.config)
    model.set_blend_weights(offline_estimate(ctx, model).weights)
    return Outcome(_fit(ctx, model))


def gblend_offline_recipe(ctx):
    """The recipe with offline weights: estimated once before training (the
    paper's main scheme), the fused share floored at 1 / (K + 1), scaled to sum
    to K + 1, dropout."""
    model = common.build_model(ctx.task, ctx.config, dropout=ctx.config.dropout)
    weights = estimators.floor_fused_share(offline_estimate(ctx, model).weights)
    model.set_blend_weights(weights * len(weights))
    return Outcome(_fit(ctx, model))


def gblend_callback(ctx, mode="in_situ", **kwargs):
    """The `GBlendCallback` of the online methods, with `ctx.config`'s settings
    and the paper's preset (`kwargs`: further callback arguments, e.g.
    `estimator`, `weight_scale`, which override the preset's)."""
    exact = mode == "exact"
    return GBlendCallback(
        ctx.subset,
        ctx.heldout,
        warmup_epochs=ctx.config.warmup_epochs,
        super_epoch=ctx.config.super_epoch,
        min_weight=ctx.config.min_weight,
        smoothing=ctx.config.smoothing,
        mode=mode,
        train_data=ctx.train if exact else None,
        exact_epochs=ctx.config.exact_epochs,
        verbose=ctx.verbose,
        state_path=ctx.fresh_state_path(),
        **{"preset": "paper", **kwargs},
    )


def gblend_online(ctx, mode="in_situ", dropout=0.0, **kwargs):
    """Weights re-estimated during training by `GBlendCallback`."""
    model = common.build_model(ctx.task, ctx.config, dropout=dropout)
    callback = gblend_callback(ctx, mode, **kwargs)
    _fit(ctx, model, [callback])
    return Outcome(model, state_path=callback.state_path)


def gblend_exact(ctx):
    """Online G-Blend with the paper's exact scheme (copies train n epochs)."""
    return gblend_online(ctx, mode="exact")


def gblend_dropout(ctx):
    """In-situ online G-Blend with dropout."""
    return gblend_online(ctx, dropout=ctx.config.dropout)


def gblend_recipe(ctx):
    """The project's recipe (RESULTS.md): in-situ G-Blend with dropout, the
    weights scaled to sum to the number of heads and the fused head's share
    floored at 1 / (K + 1)."""
    estimator = estimators.fused_floor(estimators.paper)
    return gblend_online(
        ctx, dropout=ctx.config.dropout, weight_scale="num_heads", estimator=estimator
    )


def gblend_default(ctx):
    """The README's first block: every setting a package default. Encoders and
    heads with dropout 0.5 (`ctx.config.dropout`, the package's default) and a
    `GBlendCallback` with nothing but `T'` and `V` (preset "default": fused
    floor, weights x num_heads, output mode chosen on `V`); scored on the
    model's output."""
    return _first_block(ctx)


def gblend_default_num_heads(ctx):
    """The first block as the previous release shipped it: the weights scaled
    to sum to the number of heads (now `"max_one"`, CHANGELOG.md)."""
    return _first_block(ctx, weight_scale="num_heads")


def _first_block(ctx, **kwargs):
    model = common.build_model(ctx.task, ctx.config, dropout=ctx.config.dropout)
    callback = GBlendCallback(
        ctx.subset,
        ctx.heldout,
        verbose=ctx.verbose,
        state_path=ctx.fresh_state_path(),
        **kwargs,
    )
    _fit(ctx, model, [callback])
    return Outcome(model, output=OUTPUT, state_path=callback.state_path)


def heads_dropout(ctx):
    """The recipe without G-Blend: every head's loss with weight 1, dropout."""
    model = common.build_model(ctx.task, ctx.config, dropout=ctx.config.dropout)
    model.set_blend_weights({h: 1.0 for h in model.head_names})
    return Outcome(_fit(ctx, model))


def ogm_ge(ctx):
    """OGM-GE (Peng et al., CVPR 2022): late fusion with on-the-fly gradient
    modulation and Gaussian noise (`keras_gblend.baselines.ogm`)."""
    from keras_gblend.baselines.ogm import OGMGEModel, OGMSchedule

    branches = common.make_branches(ctx.task, ctx.config)
    model = OGMGEModel(
        branches, ctx.task.num_classes, alpha=ctx.config.ogm_alpha, seed=ctx.seed
    )
    model.compile(optimizer=common._optimizer(ctx.config), metrics=["accuracy"])
    return Outcome(_fit(ctx, model, [OGMSchedule()]), output=FUSED)


METHODS = {
    "unimodal": unimodal,
    "naive": naive,
    "dropout": dropout,
    "early_stopping": early_stopping,
    "pretrain": pretrain,
    "uniform": uniform,
    "gblend_offline": gblend_offline,
    "gblend_online": gblend_online,
    "gblend_exact": gblend_exact,
    "gblend_dropout": gblend_dropout,
    "gblend_recipe": gblend_recipe,
    "gblend_default": gblend_default,
    "gblend_default_num_heads": gblend_default_num_heads,
    "heads_dropout": heads_dropout,
    "gblend_offline_recipe": gblend_offline_recipe,
    "ogm_ge": ogm_ge,
}


def output_modes(model, ctx):
    """Test accuracy of every output mode, the `weighted` one fit on `V` only,
    and of the model's output with each modality removed (issue: inference)."""
    model.fit_output_weights(ctx.heldout, batch_size=ctx.config.batch_size)
    x, y = ctx.task.test
    result = model.evaluate_outputs(x, y, batch_size=ctx.config.batch_size)["modes"]
    for gone in model.modalities:
        rest = {m: x[m] for m in model.modalities if m != gone}
        for mode in ("fused", "weighted"):
            probs = model.predict_output(rest, mode=mode)
            result[f"{mode}_without_{gone}"] = float(np.mean(probs.argmax(-1) == y))
    return result


# name -> function(model, ctx) -> JSON value, run on every trained GBlendModel.
EVALUATIONS = {"modes": output_modes}


def evaluate(outcome, ctx):
    """The result fields of one `Outcome`: test accuracies, weights, evaluations."""
    model, (x, y) = outcome.model, ctx.task.test
    names = getattr(model, "modalities", None) or list(model.input)
    probs = model.predict(
        {m: x[m] for m in names}, batch_size=ctx.config.batch_size, verbose=0
    )
    if not isinstance(probs, dict):  # A single head's model.
        probs = {outcome.output: probs}
    accs = {h: float(np.mean(np.argmax(p, -1) == y)) for h, p in probs.items()}
    if outcome.output == OUTPUT:
        accs[OUTPUT] = prediction.accuracy(
            model.predict_output(x, batch_size=ctx.config.batch_size), y
        )
    fields = dict(
        accuracy=accs[outcome.output], head_accuracy=accs, ensemble_accuracy=None
    )
    if isinstance(model, GBlendModel):
        ensemble = np.mean([probs[h] for h in model.head_names], axis=0)
        fields["ensemble_accuracy"] = float(np.mean(np.argmax(ensemble, -1) == y))
        fields["weights"] = outcome.weights or model.get_blend_weights()
        fields["output_mode"] = model.output_mode
        fields.update({name: fn(model, ctx) for name, fn in EVALUATIONS.items()})
    else:
        fields["weights"] = outcome.weights
    return fields


def _outcomes(result):
    return [result] if isinstance(result, Outcome) else result


def run_method(
    method,
    task,
    config=None,
    seed=0,
    verbose=0,
    strategy="default",
    state_path=None,
):
    """Trains one method on `task` and returns its result rows.

    Args:
        method: A key of `METHODS`.
        task: A `common.Task`.
        config: A `common.Config`; None: the defaults.
        seed: Seed of the split, the initialisation and the data order.
        verbose: Keras verbosity of `fit`.
        strategy: `"default"`, `"mirrored"` or `"multi_worker"`: the
            `tf.distribute` strategy whose scope the whole run is in.
        state_path: Where a G-Blend method writes its state file (which
            `tools/plot_blend.py` plots), or None for none.

    Returns:
        A list of dicts, one per trained model, with `method`, `seed`,
        `accuracy` (the head the model answers with: fused, or the modality of
        a uni-modal model), `head_accuracy`, `ensemble_accuracy`, `weights`
        (final blend weights), `state_path`, `seconds`, one field per
        `EVALUATIONS` entry and the outcome's `extra` fields.

    Raises:
        ValueError: If `method` is unknown.
    """
    if method not in METHODS:
        raise ValueError(
            f"`method` must be one of {list(METHODS)}. Received {method!r}."
        )
    config = config or common.Config()
    rows = []
    with common.strategy_scope(strategy):  # Every model and copy in its scope.
        ctx = make_context(
            task, config, seed, method=method, verbose=verbose, state_path=state_path
        )
        start = time.perf_counter()
        for outcome in _outcomes(METHODS[method](ctx)):
            row = dict(method=outcome.name or method, seed=seed)
            row.update(evaluate(outcome, ctx), state_path=outcome.state_path)
            row.update(outcome.extra, seconds=time.perf_counter() - start)
            rows.append(row)
    return rows
