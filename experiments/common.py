"""What every experiment shares: data sets, settings, the model, the split, and
what a method gets (`Context`; what it gives back, `Outcome`, is in
`experiments.evaluations`).

The methods are the rows of `experiments.methods.METHODS` (written in
`experiments.rows`), run by `experiments.methods.run_method`; the programs
(`train`, `compare`, `crossval`, ...) only choose rows and format tables. Every
method trains on the same trained part of the training split; the held-out set
`V` (a stratified or, for AV-Digits, speaker-grouped split of the training data)
is used only for G-Blend's estimates and by early stopping. The test split is
used once, for the reported accuracies.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os

import keras
import numpy as np
import tensorflow as tf

from keras_gblend import data
from keras_gblend.data import av_digits, mfeat
from keras_gblend.model import encoders
from keras_gblend.model.builder import build_gblend_model
from keras_gblend.tf import distribute

DATASETS = ("synthetic", "av_digits", "mfeat")


@dataclasses.dataclass(frozen=True)
class Task:
    """A data set ready for the experiments.

    Attributes:
        name: Data set name.
        train: Training `(x, y)` pair (trained part and `V` are split from it).
        test: Test `(x, y)` pair.
        groups: Group id per training example for a grouped held-out split, or
            None for a stratified random split.
        num_classes: Number of classes.
    """

    name: str
    train: tuple
    test: tuple
    groups: np.ndarray | None
    num_classes: int


@dataclasses.dataclass(frozen=True)
class Config:
    """Hyper-parameters shared by every method (defaults: the demo setting)."""

    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 0.01
    momentum: float = 0.9
    heldout_fraction: float = 0.2
    subset_size: int = 1000
    warmup_epochs: int = 2
    super_epoch: int = 3
    offline_epochs: int = 10
    exact_epochs: int = 2
    min_weight: float = 0.05
    smoothing: float = 0.0
    dropout: float = 0.5
    patience: int = 5
    sep_b: float = 2.5
    feature_units: int = 64
    ogm_alpha: float = 0.1  # OGM-GE's modulation strength (chosen on V: docs/ogm_ge.md)
    # AV-Digits: a small CNN for images, a fully connected encoder on the log-mel
    # patch for audio (see RESULTS.md for a conv audio encoder).
    encoders: str = "image:conv+audio:mlp"


def load_task(name, config=Config(), seed=0):
    """Loads data set `name` (one of `DATASETS`) as a `Task`.

    `mfeat` is the UCI Multiple Features handwritten digits (6 views, K = 6).

    Raises:
        ValueError: If `name` is unknown.
    """
    if name == "synthetic":
        ds = data.make_synthetic(sep_b=config.sep_b, seed=seed)
        return Task(name, ds.train, ds.test, None, ds.num_classes)
    if name == "av_digits":
        train = av_digits.load_av_digits("train")
        test = av_digits.load_av_digits("test")
        return Task(name, (train.x, train.y), (test.x, test.y), train.speakers, 10)
    if name == "mfeat":
        return Task(name, mfeat.load_mfeat("train"), mfeat.load_mfeat("test"), None, 10)
    raise ValueError(f"`dataset` must be one of {list(DATASETS)}. Received {name!r}.")


ENCODERS = ("mlp", "conv")


def _encoder_kinds(task, config):
    kinds = dict(item.split(":") for item in config.encoders.split("+") if item)
    unknown = {k: v for k, v in kinds.items() if v not in ENCODERS}
    if unknown:
        raise ValueError(
            f"`encoders` kinds must be in {list(ENCODERS)}. Received {unknown}."
        )
    return {
        m: kinds.get(m, "conv" if x.ndim == 4 else "mlp")
        for m, x in task.train[0].items()
    }


def make_branches(task, config, dropout=0.0):
    """One encoder per modality, as `config.encoders` says.

    `config.encoders` is a `+`-separated list `modality:kind` with kind `mlp`
    (Flatten -> Dense(64, relu)) or `conv` (Conv2D(8, 3x3) -> MaxPool -> Flatten ->
    Dense(64, relu)); modalities not listed get `conv` for 2-D inputs, else `mlp`.
    """
    branches = {}
    for modality, kind in _encoder_kinds(task, config).items():
        shape = task.train[0][modality].shape[1:]
        name = f"{modality}_encoder"
        if kind == "conv":
            branches[modality] = encoders.conv_encoder(
                shape,
                filters=(8,),
                units=config.feature_units,
                dropout=dropout,
                name=name,
            )
        else:
            branches[modality] = encoders.mlp_encoder(
                shape, units=(config.feature_units,), dropout=dropout, name=name
            )
    return branches


def optimizer(config):
    """The SGD (with momentum) every method trains with."""
    return keras.optimizers.SGD(config.learning_rate, momentum=config.momentum)


def split(task, config, seed=0):
    """The trained part, the fixed subset `T'` of it, and the held-out set `V`.

    Returns:
        `(train, subset, heldout)`, three `(x, y)` pairs; `heldout` shares no
        example (and, with `task.groups`, no group) with `train`.
    """
    train, heldout = data.holdout_split(
        task.train,
        heldout_fraction=config.heldout_fraction,
        groups=task.groups,
        seed=seed,
    )
    return train, data.sample_subset(train, config.subset_size, seed=seed), heldout


def build_model(task, config, weights=None, dropout=0.0, fusion="concat"):
    """The compiled `GBlendModel` every method trains (SGD with momentum).

    `fusion`: `build_gblend_model`'s (a name, or a function of the features).
    """
    model = build_gblend_model(
        make_branches(task, config, dropout=dropout),
        task.num_classes,
        dropout=dropout,
        fusion=fusion,
        initial_blend_weights=weights,
    )
    model.compile(
        optimizer=optimizer(config),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def enable_determinism():
    """Makes TensorFlow's ops deterministic: the same seed gives the same table.

    Without it a seed's accuracy moves by up to about a point between runs on a
    multi-core CPU (thread scheduling changes the order of float sums).
    """
    tf.config.experimental.enable_op_determinism()


def strategy_scope(strategy):
    """The scope of the named `tf.distribute` strategy (`"default"`: none)."""
    if strategy == "default":
        return contextlib.nullcontext()
    return distribute.get_strategy(strategy).scope()


@dataclasses.dataclass(frozen=True)
class Context:
    """Everything a method needs: what to train on, with which settings.

    Attributes:
        task: The `Task`.
        config: The `Config`.
        seed: Seed of the split, the initialisation and the data order.
        train: The trained part of the training split, an `(x, y)` pair.
        subset: `T'`, a fixed subset of `train`.
        heldout: `V`, held out from the training split (never trained on).
        method: Name of the method being run.
        verbose: Keras verbosity of `fit` and of the G-Blend callback.
        state_path: Where a G-Blend method writes its state file, or None.
    """

    task: Task
    config: Config
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

    # The harness, as a method sees it: `experiments.rows` builds and trains
    # through these (and imports nothing of `experiments` but `evaluations`).
    def build_model(self, weights=None, dropout=0.0, fusion="concat"):
        """`build_model(self.task, self.config, ...)`: the compiled model."""
        return build_model(self.task, self.config, weights, dropout, fusion)

    def make_branches(self, dropout=0.0):
        """`make_branches(self.task, self.config, dropout)`: the encoders."""
        return make_branches(self.task, self.config, dropout=dropout)

    def optimizer(self):
        """`optimizer(self.config)`: a fresh SGD with momentum."""
        return optimizer(self.config)

    def fit(self, model, callbacks=(), **kwargs):
        """`fit(self, model, ...)`: trains `model` on `train`; returns it."""
        return fit(self, model, callbacks, **kwargs)


def make_context(task, config, seed=0, **kwargs):
    """Seeds every RNG with `seed`, splits the task, returns the `Context`.

    Example:

    >>> ds = data.make_synthetic(num_train=60, num_test=10, dim_b=4, seed=0)
    >>> task = Task("synthetic", ds.train, ds.test, None, ds.num_classes)
    >>> ctx = make_context(task, Config(subset_size=20))
    >>> len(ctx.train[1]) + len(ctx.heldout[1]), len(ctx.subset[1])
    (60, 20)
    """
    keras.utils.set_random_seed(seed)
    train, subset, heldout = split(task, config, seed)
    return Context(task, config, seed, train, subset, heldout, **kwargs)


def fit(ctx, model, callbacks=(), **kwargs):
    """Trains `model` on `ctx.train` for `ctx.config`'s epochs; returns it."""
    model.fit(
        *ctx.train,
        epochs=ctx.config.epochs,
        batch_size=ctx.config.batch_size,
        callbacks=list(callbacks),
        verbose=ctx.verbose,
        **kwargs,
    )
    return model
