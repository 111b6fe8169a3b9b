"""The comparison's methods: uni-modal, naive fusion, baselines, G-Blend, OGM-GE.

A method is a function `method(ctx) -> Outcome` (or an iterable of `Outcome`s,
for methods that train several models): it builds and trains, nothing else.
`ctx` is an `experiments.common.Context`, whose methods build and train
(`ctx.build_model`, `ctx.fit`). `experiments.methods.METHODS` names every
method (each by its function's name here) and `experiments.methods.run_method`
runs one. Variants of a method are its
function called with other arguments (`gblend_exact` is
`gblend_online(ctx, mode="exact")`). The first sentence of a method's docstring
is its legend in the tables (`experiments.legends`).

The second half holds the fused-head study's rows (RESULTS.md, "Why the fused
head stays near naive fusion"), built from the first half's. They isolate:

* the learning-rate confound: with SGD (+ momentum, no weight decay) multiplying
  every loss weight by c is exactly multiplying the learning rate by c, so a
  weight scale is trained here as the learning rate times the scale (`_x3`:
  times 3; the in-situ recipes `recipe_<estimator>`: times the number of heads
  K + 1, their G-Blend weights summing to 1);
* fused-head under-training: a floor on the fused head's share of the weights
  (`keras_gblend.blend.estimators.fused_floor`, 1 / (K + 1));
* memorised features reaching the fused head: a fused head that does not
  back-propagate into the branches (`gblend_x3_stop`).
"""

from __future__ import annotations

import dataclasses

import keras

from experiments.evaluations import OUTPUT, Outcome
from keras_gblend.baselines.ogm import OGMGEModel, OGMSchedule
from keras_gblend.blend import estimators
from keras_gblend.blend.head_copies import estimate_offline
from keras_gblend.model import prediction
from keras_gblend.model.heads import FUSED
from keras_gblend.training.callback import GBlendCallback


def _naive_model(ctx, dropout=0.0):
    model = ctx.build_model(dropout=dropout)
    model.set_blend_weights({h: float(h == FUSED) for h in model.head_names})
    return model


def train_head(ctx, model, head, epochs):
    """Trains `model.head_model(head)` alone (SGD, like the model); returns it."""
    sub = model.head_model(head)
    sub.compile(
        optimizer=ctx.optimizer(),
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
    model = ctx.build_model()
    for modality in model.modalities:
        sub = train_head(ctx, model, modality, ctx.config.epochs)
        yield Outcome(sub, name=f"unimodal_{modality}", output=modality)


def unimodal_ensemble(ctx):
    """Separately trained uni-modal models, their probabilities averaged
    (`ensemble_mean`) or combined with weights fit on `V` (`ensemble_fit_v`).

    Yields the uni-modal models first (rows `unimodal_<modality>`, as
    `unimodal`), then the two ensembles, each a functional model over every
    modality whose output is the combined probabilities. `ensemble_fit_v`'s
    weights are `fit_combination_weights` on the members' predictions on `V`
    (`ctx.heldout`), never on test data; they are its row's `weights`.
    """
    model = ctx.build_model()
    subs = {m: train_head(ctx, model, m, ctx.config.epochs) for m in model.modalities}
    for modality, sub in subs.items():
        yield Outcome(sub, name=f"unimodal_{modality}", output=modality)
    x, y = ctx.heldout
    size = ctx.config.batch_size
    on_v = {
        m: s.predict({m: x[m]}, batch_size=size, verbose=0) for m, s in subs.items()
    }
    uniform = {m: 1.0 / len(subs) for m in subs}
    fit = prediction.fit_combination_weights(on_v, y)
    for name, weights in (("ensemble_mean", uniform), ("ensemble_fit_v", fit)):
        yield Outcome(_weighted_ensemble(subs, weights), name, name, weights=weights)


def _weighted_ensemble(subs, weights):
    """A model over every modality: `sum_m weights[m] * subs[m](x[m])`."""
    inputs = {m: keras.Input(s.input[m].shape[1:], name=m) for m, s in subs.items()}
    probs = [float(weights[m]) * s({m: inputs[m]}) for m, s in subs.items()]
    return keras.Model(
        inputs, keras.layers.Add()(probs) if len(probs) > 1 else probs[0]
    )


def naive(ctx, dropout=0.0):
    """Late fusion trained on the fused head's loss only."""
    return Outcome(ctx.fit(_naive_model(ctx, dropout)))


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
    model = ctx.fit(_naive_model(ctx), [stop], validation_data=ctx.heldout)
    return Outcome(model)


def pretrain(ctx):
    """Naive fusion whose branches were first trained uni-modally (half the epochs)."""
    model = _naive_model(ctx)
    for modality in model.modalities:
        train_head(ctx, model, modality, ctx.config.epochs // 2)
    return Outcome(ctx.fit(model))


def uniform(ctx, dropout=0.0):
    """Every head's loss with the same weight (auxiliary heads)."""
    model = ctx.build_model(dropout=dropout)
    return Outcome(ctx.fit(model))


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
    model = ctx.build_model()
    model.set_blend_weights(offline_estimate(ctx, model).weights)
    return Outcome(ctx.fit(model))


def gblend_offline_recipe(ctx):
    """The recipe with offline weights: estimated once before training (the
    paper's main scheme), the fused share floored at 1 / (K + 1), scaled to sum
    to K + 1, dropout."""
    model = ctx.build_model(dropout=ctx.config.dropout)
    weights = estimators.floor_fused_share(offline_estimate(ctx, model).weights)
    model.set_blend_weights(weights * len(weights))
    return Outcome(ctx.fit(model))


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


def gblend_online(ctx, mode="in_situ", dropout=0.0, fusion="concat", **kwargs):
    """Weights re-estimated during training by `GBlendCallback`."""
    model = ctx.build_model(dropout=dropout, fusion=fusion)
    callback = gblend_callback(ctx, mode, **kwargs)
    ctx.fit(model, [callback])
    return Outcome(model, state_path=callback.state_path, blend_state=callback.state)


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
    floor, weights scaled so the largest is 1, output mode chosen on `V`);
    scored on the model's output."""
    return _first_block(ctx)


def gblend_default_num_heads(ctx):
    """The first block as the previous release shipped it: the weights scaled
    to sum to the number of heads (now `"max_one"`, CHANGELOG.md)."""
    return _first_block(ctx, weight_scale="num_heads")


def _first_block(ctx, **kwargs):
    model = ctx.build_model(dropout=ctx.config.dropout)
    callback = GBlendCallback(
        ctx.subset,
        ctx.heldout,
        verbose=ctx.verbose,
        state_path=ctx.fresh_state_path(),
        **kwargs,
    )
    ctx.fit(model, [callback])
    return Outcome(
        model,
        output=OUTPUT,
        state_path=callback.state_path,
        blend_state=callback.state,
    )


def heads_dropout(ctx):
    """The recipe without G-Blend: every head's loss with weight 1, dropout."""
    model = ctx.build_model(dropout=ctx.config.dropout)
    model.set_blend_weights({h: 1.0 for h in model.head_names})
    return Outcome(ctx.fit(model))


def ogm_ge(ctx, ge=True):
    """OGM-GE (Peng et al., CVPR 2022): late fusion with on-the-fly gradient
    modulation and Gaussian noise (`keras_gblend.baselines.ogm`). With
    `ge=False`: OGM, the modulation without the noise."""
    branches = ctx.make_branches()
    model = OGMGEModel(
        branches,
        ctx.task.num_classes,
        alpha=ctx.config.ogm_alpha,
        ge=ge,
        seed=ctx.seed,
    )
    model.compile(optimizer=ctx.optimizer(), metrics=["accuracy"])
    return Outcome(ctx.fit(model, [OGMSchedule()]), output=FUSED)


# The fused-head study's rows.

X3 = 3.0


def _num_heads(ctx):
    return len(ctx.task.train[0]) + 1


def _at_rate(ctx, scale):
    """`ctx` with its learning rate times `scale`."""
    config = ctx.config
    faster = dataclasses.replace(config, learning_rate=config.learning_rate * scale)
    return dataclasses.replace(ctx, config=faster)


def _stop_gradient_concat(features):
    return keras.layers.Concatenate(name="fusion")(
        [keras.ops.stop_gradient(f) for f in features]
    )


def naive_lr_third(ctx):
    """Naive fusion at a third of the learning rate."""
    return naive(_at_rate(ctx, 1 / 3))


def naive_lr_x3(ctx):
    """Naive fusion at three times the learning rate."""
    return naive(_at_rate(ctx, X3))


def uniform_x3(ctx):
    """Every head's loss with the same weight, at three times the learning rate."""
    return uniform(_at_rate(ctx, X3))


def dropout_x3(ctx):
    """Naive fusion with dropout, at three times the learning rate."""
    return dropout(_at_rate(ctx, X3))


def gblend_x3(ctx):
    """In-situ G-Blend (the paper's) at three times the learning rate."""
    return gblend_online(_at_rate(ctx, X3))


def gblend_x3_floor(ctx):
    """In-situ G-Blend at three times the learning rate, the fused head's share
    floored at 1 / 3."""
    estimator = estimators.fused_floor(estimators.paper, 1 / 3)
    return gblend_online(_at_rate(ctx, X3), estimator=estimator)


def gblend_x3_stop(ctx):
    """In-situ G-Blend at three times the learning rate, the fused head cut from
    the branches (its gradient stops at the features)."""
    return gblend_online(_at_rate(ctx, X3), fusion=_stop_gradient_concat)


def gblend_x3_dropout(ctx):
    """In-situ G-Blend with dropout at three times the learning rate."""
    return gblend_dropout(_at_rate(ctx, X3))


def uniform_heads_dropout(ctx):
    """The in-situ recipe without G-Blend: every head's loss with the same
    weight, dropout, at K + 1 times the learning rate."""
    return uniform(_at_rate(ctx, _num_heads(ctx)), dropout=ctx.config.dropout)


def _recipe(ctx, estimator, rate=False):
    """In-situ G-Blend with dropout, the fused share floored at 1 / (K + 1), at
    K + 1 times the learning rate; `estimator` a name of `estimators`."""
    estimator = estimators.get(estimator)
    if rate:
        estimator = estimators.rate_normalised(estimator)
    heads = _num_heads(ctx)
    return gblend_online(
        _at_rate(ctx, heads),
        dropout=ctx.config.dropout,
        estimator=estimators.fused_floor(estimator, 1 / heads),
    )


def recipe_paper(ctx):
    """The in-situ recipe: G-Blend (the paper's estimate) with dropout, the
    fused head's share floored at 1 / (K + 1), at K + 1 times the learning
    rate."""
    return _recipe(ctx, "paper")


def recipe_uncertain(ctx):
    """The in-situ recipe with the `uncertain` estimator."""
    return _recipe(ctx, "uncertain")


def recipe_windowed(ctx):
    """The in-situ recipe with the `windowed` estimator."""
    return _recipe(ctx, "windowed")


def recipe_robust(ctx):
    """The in-situ recipe with the `robust` estimator."""
    return _recipe(ctx, "robust")


def recipe_rate(ctx):
    """The in-situ recipe with rate-normalised deltas (`paper` estimator)."""
    return _recipe(ctx, "paper", rate=True)


def recipe_rate_uncertain(ctx):
    """The in-situ recipe with rate-normalised deltas and the `uncertain`
    estimator."""
    return _recipe(ctx, "uncertain", rate=True)
