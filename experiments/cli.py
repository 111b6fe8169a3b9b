"""What the command-line programs share: `--config`, `--strategy`, `--deterministic`.

The one place that defines `--config` (`define_config_flag`) and reads it
(`make_config`); `run_program` runs a program's `main` with a `--help` that
exits 0. Every program of `experiments` and `tools` uses them.
"""

from __future__ import annotations

import dataclasses
import sys

from absl import app, flags

from experiments.common import Config


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


def define_config_flag():
    """Defines `--config`: `Config` overrides that win over every other setting."""
    flags.DEFINE_list(
        "config",
        [],
        "Config overrides name=value,... (e.g. super_epoch=5,sep_b=2.5; they win "
        f"over the other flags and the preset); names (type, default): "
        f"{config_help()}.",
    )


def define_shared_flags():
    """Defines the flags of the training programs: `--config`, `--strategy`,
    `--deterministic`."""
    define_config_flag()
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
