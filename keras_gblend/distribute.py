"""`tf.distribute` strategies for G-Blend training, and checks for broken setups.

Build and compile the model inside `strategy.scope()`; `fit` then splits every
global batch across the replicas. The blend-weight variables are created with
`aggregation="only_first_replica"`, so the callback's `assign` (in cross-replica
context, between epochs) writes the same value to every replica.

Known broken in Keras 3.15 / TensorFlow 2.21, detected by `check_compatibility`
(which `GBlendModel.compile` can call) instead of failing deep inside `fit`:

* `jit_compile=True` with `MirroredStrategy` (keras-team/keras#19005):
  `InvalidArgumentError: Trying to access resource ... located in device
  .../device:CPU:1 from device .../device:CPU:0`.
* `steps_per_execution > 1` with `MirroredStrategy` (keras-team/keras#19246):
  `InvalidArgumentError: You must feed a value for placeholder tensor
  'while/body/...'`.
* `MultiWorkerMirroredStrategy` with `fit` (keras-team/keras#20585,
  tensorflow/tensorflow#72388), and `MirroredStrategy` when the first batch of
  `fit`/`evaluate` does not split evenly over the replicas: fixed by
  `keras_gblend.compat`, which `get_strategy` applies.
"""

from __future__ import annotations

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker")


def get_strategy(name="default", *, devices=None):
    """Returns a `tf.distribute` strategy by name.

    Args:
        name: `"default"` (the default strategy: one device, no replication),
            `"mirrored"` (`MirroredStrategy` over `devices`, by default every
            GPU, or every logical CPU device when there is no GPU and the CPU
            was split into several logical devices, else the one CPU), or
            `"multi_worker"` (`MultiWorkerMirroredStrategy`, configured from the
            `TF_CONFIG` environment variable). Both apply
            `keras_gblend.compat.apply_distribute_fixes`.
        devices: Optional list of device names for `"mirrored"`, e.g.
            `["/gpu:0", "/gpu:1"]`.

    Returns:
        A `tf.distribute.Strategy`.

    Raises:
        ValueError: If `name` is unknown, or `devices` is given with a strategy
            other than `"mirrored"`.

    Example:

    >>> get_strategy("default").num_replicas_in_sync
    1
    """
    if name not in STRATEGIES:
        raise ValueError(
            f"`name` must be one of {list(STRATEGIES)}. Received {name!r}."
        )
    if devices is not None and name != "mirrored":
        raise ValueError(
            f"`devices` is only used with name='mirrored'. Received name={name!r} "
            f"and devices={devices!r}."
        )
    if name == "default":
        return tf.distribute.get_strategy()
    from keras_gblend import compat

    compat.apply_distribute_fixes()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices or _mirrored_devices())
    return tf.distribute.MultiWorkerMirroredStrategy()


def _mirrored_devices():
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        return [d.name for d in gpus]
    return [d.name for d in tf.config.list_logical_devices("CPU")]


def check_compatibility(strategy, *, jit_compile=False, steps_per_execution=1):
    """Raises a clear error for strategy settings known to break Keras `fit`.

    Args:
        strategy: A `tf.distribute.Strategy` (e.g. `model.distribute_strategy`).
        jit_compile: The model's `jit_compile` (`True`, `False` or `"auto"`;
            Keras resolves `"auto"` to False under a strategy).
        steps_per_execution: The model's `steps_per_execution`.

    Raises:
        ValueError: For `jit_compile=True` or `steps_per_execution > 1` with a
            `MirroredStrategy` of more than one replica; the message says why,
            names the upstream issue, and what to do.

    Example:

    >>> check_compatibility(tf.distribute.get_strategy(), jit_compile=True)
    """
    if not isinstance(strategy, tf.distribute.MirroredStrategy):
        return
    if strategy.num_replicas_in_sync < 2:
        return
    name = f"MirroredStrategy with {strategy.num_replicas_in_sync} replicas"
    if jit_compile is True:
        raise ValueError(
            f"`jit_compile=True` does not work with {name} in Keras 3.15 / "
            "TensorFlow 2.21: the XLA-compiled step reads every replica's "
            "variables from the first device and fails with 'Trying to access "
            "resource ... located in device ...:1 from device ...:0' "
            "(https://github.com/keras-team/keras/issues/19005). Compile with "
            "jit_compile=False (or 'auto', which is False under a strategy). "
            f"Received jit_compile={jit_compile!r}."
        )
    if steps_per_execution != 1:
        raise ValueError(
            f"`steps_per_execution` > 1 does not work with {name} in Keras 3.15 "
            "/ TensorFlow 2.21: the multi-step loop fails with 'You must feed a "
            "value for placeholder tensor while/...' "
            "(https://github.com/keras-team/keras/issues/19246). Compile with "
            "steps_per_execution=1 and use a larger global batch instead. "
            f"Received steps_per_execution={steps_per_execution!r}."
        )
