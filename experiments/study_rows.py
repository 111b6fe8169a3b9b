"""The fused-head study's methods: loss-weight scales, fused floors, estimators.

Rows of `experiments.methods.METHODS` like those of `experiments.rows`, built
from them (RESULTS.md, "Why the fused head stays near naive fusion" and the
cross-validated comparison). They isolate three suspected causes:

* the learning-rate confound: with SGD (+ momentum, no weight decay) multiplying
  every loss weight by c is exactly multiplying the learning rate by c, so a
  weight scale is trained here as the learning rate times the scale (`_x3`:
  times 3; the recipes: times the number of heads K + 1, their G-Blend weights
  summing to 1);
* fused-head under-training: a floor on the fused head's share of the weights
  (`keras_gblend.blend.estimators.fused_floor`, 1 / (K + 1));
* memorised features reaching the fused head: a fused head that does not
  back-propagate into the branches (`gblend_x3_stop`).

The recipes (`recipe_<estimator>`) are in-situ G-Blend with dropout, the fused
floor and the x (K + 1) rate, with each estimator of
`keras_gblend.blend.estimators`; `recipe_rate*` divide each head's deltas by its
weight in force (`estimators.rate_normalised`).
"""

from __future__ import annotations

import dataclasses

import keras

from experiments import rows
from keras_gblend.blend import estimators

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
    return rows.naive(_at_rate(ctx, 1 / 3))


def naive_lr_x3(ctx):
    """Naive fusion at three times the learning rate."""
    return rows.naive(_at_rate(ctx, X3))


def uniform_x3(ctx):
    """Every head's loss with the same weight, at three times the learning rate."""
    return rows.uniform(_at_rate(ctx, X3))


def dropout_x3(ctx):
    """Naive fusion with dropout, at three times the learning rate."""
    return rows.dropout(_at_rate(ctx, X3))


def gblend_x3(ctx):
    """In-situ G-Blend (the paper's) at three times the learning rate."""
    return rows.gblend_online(_at_rate(ctx, X3))


def gblend_x3_floor(ctx):
    """In-situ G-Blend at three times the learning rate, the fused head's share
    floored at 1 / 3."""
    estimator = estimators.fused_floor(estimators.paper, 1 / 3)
    return rows.gblend_online(_at_rate(ctx, X3), estimator=estimator)


def gblend_x3_stop(ctx):
    """In-situ G-Blend at three times the learning rate, the fused head cut from
    the branches (its gradient stops at the features)."""
    return rows.gblend_online(_at_rate(ctx, X3), fusion=_stop_gradient_concat)


def gblend_x3_dropout(ctx):
    """In-situ G-Blend with dropout at three times the learning rate."""
    return rows.gblend_dropout(_at_rate(ctx, X3))


def uniform_heads_dropout(ctx):
    """The in-situ recipe without G-Blend: every head's loss with the same
    weight, dropout, at K + 1 times the learning rate."""
    return rows.uniform(_at_rate(ctx, _num_heads(ctx)), dropout=ctx.config.dropout)


def _recipe(ctx, estimator, rate=False):
    """In-situ G-Blend with dropout, the fused share floored at 1 / (K + 1), at
    K + 1 times the learning rate; `estimator` a name of `estimators`."""
    estimator = estimators.get(estimator)
    if rate:
        estimator = estimators.rate_normalised(estimator)
    heads = _num_heads(ctx)
    return rows.gblend_online(
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
