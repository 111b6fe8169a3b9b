"""Offline and exact-online G-Blend estimation by training copies of sub-models.

The paper's recipes (Algorithms 1-3) estimate each head's overfitting-to-
generalisation behaviour by training the uni-modal sub-models (one branch and its
head) and the naively fused model separately for a few epochs. Every copy here is
rebuilt from the model's config plus `set_weights`, gets a fresh optimizer
built from the main model's optimizer config, and so never shares weights or
optimizer state with the main model.
"""

from __future__ import annotations

import keras
import numpy as np

from keras_gblend import blending
from keras_gblend.data import arrays
from keras_gblend.models import FUSED


def head_submodel(model, head):
    """A single-output model computing `head` from its own inputs only.

    The sub-model shares layers (and so weights) with `model`: call it on a copy
    (see `copy_model`) to train it independently.

    Args:
        model: A `GBlendModel`.
        head: A modality name (branch + its head) or `"fused"` (all branches + the
            fused head: the naive late-fusion model).

    Returns:
        A functional `keras.Model` with a dict input and one softmax output.

    Raises:
        ValueError: If `head` is not one of `model.head_names`.

    Example:

    >>> import keras
    >>> from keras_gblend import build_gblend_model
    >>> branches = {
    ...     n: keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    ...     for n in ("a", "b")
    ... }
    >>> model = build_gblend_model(branches, num_classes=2)
    >>> list(head_submodel(model, "a").input)
    ['a']
    """
    if head not in model.head_names:
        raise ValueError(
            f"`head` must be one of {list(model.head_names)}. Received {head!r}."
        )
    names = model.modalities if head == FUSED else (head,)
    return keras.Model(
        inputs={m: model.input[m] for m in names},
        outputs=model.output[head],
        name=f"{model.name}_{head}_submodel",
    )


def copy_model(model):
    """An independent copy of a `GBlendModel` with the same weights.

    Example:

    >>> import keras
    >>> from keras_gblend import build_gblend_model
    >>> branches = {
    ...     n: keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    ...     for n in ("a", "b")
    ... }
    >>> model = build_gblend_model(branches, num_classes=2)
    >>> twin = copy_model(model)
    >>> twin.trainable_variables[0] is model.trainable_variables[0]
    False
    """
    twin = model.__class__.from_config(model.get_config())
    twin.set_weights(model.get_weights())
    return twin


def _fresh_optimizer(model, learning_rate=None):
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return keras.optimizers.SGD(learning_rate=0.01, momentum=0.9)
    config = optimizer.get_config()
    if learning_rate is not None:
        config["learning_rate"] = float(learning_rate)
    return optimizer.__class__.from_config(config)


def _loss(model, data, batch_size):
    x, y = data
    x = {name: x[name] for name in model.input}
    return float(model.evaluate(x, y, batch_size=batch_size, verbose=0))


def measure_heads_by_training(
    model,
    train_data,
    train_subset,
    heldout,
    *,
    epochs,
    batch_size=64,
    learning_rate=None,
    seed=None,
    verbose=0,
):
    """Trains a copy of every head's sub-model and measures it before and after.

    For every head, a copy of `model` (current weights) is cut down to that head's
    sub-model, compiled with a fresh optimizer of the main model's kind, trained
    for `epochs` epochs on `train_data`, and its loss measured in inference mode on
    `train_subset` (`T'`) and `heldout` (`V`) before and after training.

    Args:
        model: A compiled `GBlendModel`; it is not modified.
        train_data: `(x, y)` arrays the copies train on (the trained part only).
        train_subset: `T'`, `(x, y)` arrays.
        heldout: `V`, `(x, y)` arrays.
        epochs: Training epochs of each copy (>= 1).
        batch_size: Batch size of training and measurement.
        learning_rate: Learning rate of the copies' optimizers; default: the main
            optimizer's configured one.
        seed: Optional seed for `keras.utils.set_random_seed` before each copy.
        verbose: Passed to `fit` of the copies.

    Returns:
        A dict with `"train_before"`, `"heldout_before"`, `"train_after"`,
        `"heldout_after"`: float64 arrays in `model.head_names` order.

    Raises:
        ValueError: If `epochs < 1` or a data argument is malformed.

    Example:

    >>> import keras
    >>> from keras_gblend import build_gblend_model, data
    >>> ds = data.make_synthetic(num_train=64, num_test=8, dim_b=8)
    >>> train, heldout = data.holdout_split(ds.train, heldout_fraction=0.25)
    >>> branches = {
    ...     m: keras.Sequential([keras.Input(x.shape[1:]), keras.layers.Dense(4)])
    ...     for m, x in train[0].items()
    ... }
    >>> model = build_gblend_model(branches, num_classes=ds.num_classes)
    >>> model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    >>> losses = measure_heads_by_training(model, train, train, heldout, epochs=1)
    >>> sorted(losses), losses["heldout_after"].shape
    (['heldout_after', 'heldout_before', 'train_after', 'train_before'], (3,))
    """
    if not (isinstance(epochs, (int, np.integer)) and epochs >= 1):
        raise ValueError(f"`epochs` must be an int >= 1. Received {epochs!r}.")
    train_data = arrays.check_pair("train_data", train_data)
    train_subset = arrays.check_pair("train_subset", train_subset)
    heldout = arrays.check_pair("heldout", heldout)
    loss = model.loss[FUSED] if isinstance(model.loss, dict) else model.loss
    results = {k: [] for k in ("train_before", "heldout_before")}
    results.update(train_after=[], heldout_after=[])
    for head in model.head_names:
        if seed is not None:
            keras.utils.set_random_seed(seed)
        sub = head_submodel(copy_model(model), head)
        sub.compile(optimizer=_fresh_optimizer(model, learning_rate), loss=loss)
        results["train_before"].append(_loss(sub, train_subset, batch_size))
        results["heldout_before"].append(_loss(sub, heldout, batch_size))
        x, y = train_data
        sub.fit(
            {m: x[m] for m in sub.input},
            y,
            epochs=epochs,
            batch_size=batch_size,
            shuffle=True,
            verbose=verbose,
        )
        results["train_after"].append(_loss(sub, train_subset, batch_size))
        results["heldout_after"].append(_loss(sub, heldout, batch_size))
        del sub
    return {k: np.asarray(v, np.float64) for k, v in results.items()}


def estimate_offline(
    model,
    train_data,
    train_subset,
    heldout,
    *,
    epochs,
    batch_size=64,
    min_weight=0.0,
    overfit_floor=blending.DEFAULT_OVERFIT_FLOOR,
    seed=None,
    verbose=0,
):
    """Offline G-Blend (the paper's main recipe): weights from sub-model training.

    Trains every uni-modal sub-model and the naively fused model from the main
    model's current (typically initial) weights for `epochs` epochs, measures
    `dG` and `dO` between epoch 0 and epoch `epochs`, and returns the blend
    estimate. The main model is untouched: assign the weights with
    `model.set_blend_weights(estimate.weights)` and train it with them fixed.

    Args:
        model: A compiled `GBlendModel` (its optimizer config is reused).
        train_data: `(x, y)` arrays of the trained part (never `heldout`).
        train_subset: `T'`, a fixed subset of `train_data`.
        heldout: `V`, the held-out part of the training data.
        epochs: Epochs of sub-model training (the paper's N).
        batch_size: Batch size.
        min_weight: See `blending.blend_weights`.
        overfit_floor: See `blending.blend_weights`.
        seed: Optional seed set before training each copy.
        verbose: Passed to the copies' `fit`.

    Returns:
        A `blending.BlendEstimate`.

    Example:

    >>> import keras
    >>> from keras_gblend import build_gblend_model, data
    >>> ds = data.make_synthetic(num_train=64, num_test=8, dim_b=8)
    >>> train, heldout = data.holdout_split(ds.train, heldout_fraction=0.25)
    >>> branches = {
    ...     m: keras.Sequential([keras.Input(x.shape[1:]), keras.layers.Dense(4)])
    ...     for m, x in train[0].items()
    ... }
    >>> model = build_gblend_model(branches, num_classes=ds.num_classes)
    >>> model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    >>> est = estimate_offline(model, train, train, heldout, epochs=2)
    >>> est.weights.shape
    (3,)

    References:
        Wang, Tran, Feiszli, CVPR 2020, Algorithms 1-2.
    """
    losses = measure_heads_by_training(
        model,
        train_data,
        train_subset,
        heldout,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        verbose=verbose,
    )
    return blending.blend_from_losses(
        losses["train_before"],
        losses["heldout_before"],
        losses["train_after"],
        losses["heldout_after"],
        min_weight=min_weight,
        overfit_floor=overfit_floor,
    )
