"""What every experiment shares: data sets, settings, the model, the split.

The methods themselves are in `experiments.methods`; `train.py`, `compare.py`
and `sensitivity.py` are thin absl programs over both. Every method trains on
the same trained part of the training split; the held-out set `V` (a stratified
or, for AV-Digits, speaker-grouped split of the training data) is used only for
G-Blend's estimates and by early stopping. The test split is used once, for the
reported accuracies.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys

import keras
import numpy as np
from absl import app, flags

from keras_gblend import build_gblend_model, data
from keras_gblend.model import encoders

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
        from keras_gblend.data import av_digits

        train = av_digits.load_av_digits("train")
        test = av_digits.load_av_digits("test")
        return Task(name, (train.x, train.y), (test.x, test.y), train.speakers, 10)
    if name == "mfeat":
        from keras_gblend.data import mfeat

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


def parse_overrides(items):
    """Parses `name=value` strings into `Config` field overrides.

    Args:
        items: Strings `name=value`, `name` a `Config` field (see `config_help`).

    Returns:
        A dict from field name to the value, converted to the field's type.

    Raises:
        ValueError: If a name is not a `Config` field, the value is missing, or
            it does not convert to the field's type.

    Example:

    >>> parse_overrides(["epochs=5", "min_weight=0.1"])
    {'epochs': 5, 'min_weight': 0.1}
    """
    fields = {f.name: f.type for f in dataclasses.fields(Config)}
    overrides = {}
    for item in items:
        name, _, value = item.partition("=")
        if name not in fields or not value:
            raise ValueError(
                f"`--config` items must be name=value with name one of: "
                f"{config_help()}. Received {item!r}."
            )
        convert = {"float": float, "int": int}.get(fields[name], str)
        try:
            overrides[name] = convert(value)
        except ValueError:
            raise ValueError(
                f"`--config` item {name!r} must be a {fields[name]}. "
                f"Received {value!r}."
            ) from None
    return overrides


def config_help():
    """The `Config` fields as `name (type, default)`, for flag help and errors.

    Example:

    >>> config_help()[:39]
    'epochs (int, 30), batch_size (int, 64),'
    """
    return ", ".join(
        f"{f.name} ({f.type}, {f.default})" for f in dataclasses.fields(Config)
    )


def make_config(overrides=(), **settings):
    """A `Config` from keyword settings, then `name=value` overrides (which win).

    Args:
        overrides: `--config` items, as `parse_overrides` reads them.
        **settings: `Config` fields.

    Returns:
        A `Config`.

    Raises:
        absl.app.UsageError: If an override is invalid (the command-line
            programs print its message and their usage, no traceback).

    Example:

    >>> make_config(["epochs=3"], epochs=10, sep_b=1.0).epochs
    3
    """
    try:
        settings.update(parse_overrides(overrides))
    except ValueError as error:
        raise app.UsageError(str(error)) from None
    return dataclasses.replace(Config(), **settings)


def define_shared_flags():
    """Defines the flags every program shares: `--config`, `--strategy`,
    `--deterministic`."""
    flags.DEFINE_list(
        "config",
        [],
        "Config overrides name=value,... (e.g. super_epoch=5,sep_b=2.5; they win "
        f"over the other flags); names (type, default): {config_help()}.",
    )
    flags.DEFINE_enum(
        "strategy",
        "default",
        ["default", "mirrored", "multi_worker"],
        "tf.distribute strategy (docs/robustness.md, 'Several GPUs').",
    )
    flags.DEFINE_bool(
        "deterministic",
        True,
        "Deterministic TensorFlow ops: the same seed gives the same numbers.",
    )


def enable_determinism():
    """Makes TensorFlow's ops deterministic: the same seed gives the same table.

    Without it a seed's accuracy moves by up to about a point between runs on a
    multi-core CPU (thread scheduling changes the order of float sums).
    """
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()


def strategy_scope(strategy):
    """The scope of the named `tf.distribute` strategy (`"default"`: none)."""
    if strategy == "default":
        return contextlib.nullcontext()
    from keras_gblend.tf import distribute

    return distribute.get_strategy(strategy).scope()


def run_program(main):
    """`absl.app.run(main)`, except for `--help`: the program's own flags and the
    shared ones (`define_shared_flags`), then exit status 0.

    absl ends `--help` with status 1, which reads as a failure to a user or a
    script checking the status, and lists only the main module's flags.
    """
    if any(arg in ("--help", "-h", "-?", "--helpshort") for arg in sys.argv[1:]):
        doc = (sys.modules["__main__"].__doc__ or "").strip()
        print(f"{doc}\n\nflags:\n\n{flags.FLAGS.main_module_help()}")
        print(flags.FLAGS.module_help(sys.modules[__name__]))
        sys.exit(0)
    app.run(main)
