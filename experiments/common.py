"""Library side of the experiment scripts: data sets, methods, one training run.

`train.py` and `compare.py` are thin absl programs over `load_task` and
`run_method`; tests call these functions directly with tiny settings.

Every method trains on the same trained part of the training split; the held-out
set `V` (a stratified or, for AV-Digits, speaker-grouped split of the training
data) is used only for G-Blend's estimates and by early stopping. The test split
is used once, for the reported accuracies.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time

import keras
import numpy as np

from keras_gblend import GBlendCallback, build_gblend_model, data, encoders
from keras_gblend.estimation import estimate_offline, head_submodel
from keras_gblend.models import FUSED

DATASETS = ("synthetic", "av_digits")
METHODS = (
    "unimodal",
    "naive",
    "dropout",
    "early_stopping",
    "pretrain",
    "uniform",
    "gblend_offline",
    "gblend_online",
    "gblend_exact",
    "gblend_dropout",
)


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
    # AV-Digits: a small CNN for images, a fully connected encoder on the log-mel
    # patch for audio (see RESULTS.md for a conv audio encoder).
    encoders: str = "image:conv+audio:mlp"


def load_task(name, config=Config(), seed=0):
    """Loads data set `name` (`"synthetic"` or `"av_digits"`) as a `Task`.

    Raises:
        ValueError: If `name` is unknown.
    """
    if name == "synthetic":
        ds = data.make_synthetic(sep_b=config.sep_b, seed=seed)
        return Task(name, ds.train, ds.test, None, ds.num_classes)
    if name == "av_digits":
        from keras_gblend.data import av_digits

        train = av_digits.load_av_digits("train")
        test = av_digits.load_av_digits("test")
        return Task(name, (train.x, train.y), (test.x, test.y), train.speakers, 10)
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


def _optimizer(config):
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


def build_model(task, config, weights=None, dropout=0.0):
    """The compiled `GBlendModel` every method trains (SGD with momentum)."""
    model = build_gblend_model(
        make_branches(task, config, dropout=dropout),
        task.num_classes,
        dropout=dropout,
        initial_blend_weights=weights,
    )
    model.compile(
        optimizer=_optimizer(config),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def _naive_weights(model):
    return {h: float(h == FUSED) for h in model.head_names}


def _accuracies(model, test, batch_size):
    x, y = test
    probs = model.predict(x, batch_size=batch_size, verbose=0)
    accs = {h: float(np.mean(np.argmax(p, -1) == y)) for h, p in probs.items()}
    ensemble = np.mean([probs[h] for h in model.head_names], axis=0)
    return accs, float(np.mean(np.argmax(ensemble, -1) == y))


def _train_unimodal(model, modality, train, config, epochs, verbose):
    sub = head_submodel(model, modality)
    sub.compile(
        optimizer=_optimizer(config),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    x, y = train
    sub.fit(
        {modality: x[modality]},
        y,
        epochs=epochs,
        batch_size=config.batch_size,
        verbose=verbose,
    )
    return sub


def parse_overrides(items):
    """Parses `name=value` strings into `Config` field overrides.

    Raises:
        ValueError: If a name is not a `Config` field or the value is missing.
    """
    fields = {f.name: f.type for f in dataclasses.fields(Config)}
    overrides = {}
    for item in items:
        name, _, value = item.partition("=")
        if name not in fields or not value:
            raise ValueError(
                f"`--config` items must be name=value with name in {sorted(fields)}. "
                f"Received {item!r}."
            )
        kind = fields[name]
        overrides[name] = (
            float(value)
            if kind == "float"
            else (value if kind == "str" else int(value))
        )
    return overrides


def _scope(strategy):
    if strategy == "default":
        return contextlib.nullcontext()
    from keras_gblend import distribute

    return distribute.get_strategy(strategy).scope()


def run_method(method, task, config=Config(), seed=0, verbose=0, strategy="default"):
    """Trains one method on `task` and returns its result rows.

    Args:
        method: One of `METHODS`.
        task: A `Task`.
        config: A `Config`.
        seed: Seed of the split, the initialisation and the data order.
        verbose: Keras verbosity of `fit`.
        strategy: `"default"`, `"mirrored"` or `"multi_worker"`: the
            `tf.distribute` strategy whose scope the model is built in.

    Returns:
        A list of dicts (one per modality for `"unimodal"`, else one) with
        `method`, `seed`, `accuracy` (the model's output head: fused, or the
        modality for uni-modal models), `head_accuracy`, `ensemble_accuracy`,
        `weights` (final blend weights), `weight_history` and `seconds`.

    Raises:
        ValueError: If `method` is unknown.
    """
    if method not in METHODS:
        raise ValueError(
            f"`method` must be one of {list(METHODS)}. Received {method!r}."
        )
    # Every model, copy and optimizer of the run is created in the strategy's scope.
    with _scope(strategy):
        return _run_method(method, task, config, seed, verbose)


def _run_method(method, task, config, seed, verbose):
    if method not in METHODS:
        raise ValueError(
            f"`method` must be one of {list(METHODS)}. Received {method!r}."
        )
    keras.utils.set_random_seed(seed)
    train, subset, heldout = split(task, config, seed)
    start = time.perf_counter()
    row = dict(method=method, seed=seed, weight_history=[])

    if method == "unimodal":
        model = build_model(task, config)
        rows = []
        for modality in model.modalities:
            sub = _train_unimodal(
                model, modality, train, config, config.epochs, verbose
            )
            x, y = task.test
            probs = sub.predict({modality: x[modality]}, verbose=0)
            acc = float(np.mean(np.argmax(probs, -1) == y))
            rows.append(
                dict(
                    row,
                    method=f"unimodal_{modality}",
                    accuracy=acc,
                    head_accuracy={modality: acc},
                    ensemble_accuracy=None,
                    weights=None,
                    seconds=time.perf_counter() - start,
                )
            )
        return rows

    callbacks = []
    fit_kwargs = {}
    dropout = config.dropout if method in ("dropout", "gblend_dropout") else 0.0
    model = build_model(task, config, dropout=dropout)
    if method in ("naive", "dropout", "early_stopping", "pretrain"):
        model.set_blend_weights(_naive_weights(model))
    if method == "early_stopping":
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_fused_loss",
                mode="min",
                patience=config.patience,
                restore_best_weights=True,
            )
        )
        fit_kwargs["validation_data"] = heldout
    elif method == "pretrain":
        for modality in model.modalities:
            _train_unimodal(model, modality, train, config, config.epochs // 2, verbose)
    elif method == "gblend_offline":
        estimate = estimate_offline(
            model,
            train,
            subset,
            heldout,
            epochs=config.offline_epochs,
            batch_size=config.batch_size,
            min_weight=config.min_weight,
        )
        model.set_blend_weights(estimate.weights)
        row["weight_history"] = [
            {
                "epoch": 0,
                **{
                    f"weight_{h}": float(w)
                    for h, w in zip(model.head_names, estimate.weights)
                },
            }
        ]
    elif method in ("gblend_online", "gblend_exact", "gblend_dropout"):
        exact = method == "gblend_exact"
        callbacks.append(
            GBlendCallback(
                subset,
                heldout,
                warmup_epochs=config.warmup_epochs,
                super_epoch=config.super_epoch,
                min_weight=config.min_weight,
                smoothing=config.smoothing,
                mode="exact" if exact else "in_situ",
                train_data=train if exact else None,
                exact_epochs=config.exact_epochs,
                verbose=verbose,
            )
        )
    x, y = train
    model.fit(
        x,
        y,
        epochs=config.epochs,
        batch_size=config.batch_size,
        callbacks=callbacks,
        verbose=verbose,
        **fit_kwargs,
    )
    if callbacks and isinstance(callbacks[0], GBlendCallback):
        row["weight_history"] = callbacks[0].estimates
    head_accuracy, ensemble = _accuracies(model, task.test, config.batch_size)
    row.update(
        accuracy=head_accuracy[FUSED],
        head_accuracy=head_accuracy,
        ensemble_accuracy=ensemble,
        weights=model.get_blend_weights(),
        seconds=time.perf_counter() - start,
    )
    return [row]
