"""`tf.distribute` for G-Blend: strategies, checks for broken setups, and fixes.

TensorFlow backend only (JAX users: `keras.distribution.DataParallel`, see
docs/backends.md). Build and compile the model inside `strategy.scope()`; `fit`
then splits every global batch across the replicas. The blend-weight variables
are created with `aggregation="only_first_replica"`, so the callback's `assign`
(in cross-replica context, between epochs) writes the same value to every
replica.

Known broken in Keras 3.15 / TensorFlow 2.21, refused up front by
`check_compatibility` (which `GBlendModel.compile` calls) instead of failing
deep inside `fit`:

* `jit_compile=True` with `MirroredStrategy` (keras-team/keras#19005):
  `InvalidArgumentError: Trying to access resource ... located in device
  .../device:CPU:1 from device .../device:CPU:0`.
* `steps_per_execution > 1` with `MirroredStrategy` (keras-team/keras#19246):
  `InvalidArgumentError: You must feed a value for placeholder tensor
  'while/body/...'`.

Fixed by `apply_fixes`, an explicit, idempotent patch of two private Keras
functions (Keras 3 does not support `MultiWorkerMirroredStrategy`:
keras-team/keras#20585, tensorflow/tensorflow#72388). `get_strategy` calls it
for `"mirrored"` and `"multi_worker"`; with a strategy built by hand, call it
yourself before `fit` (`GBlendModel.compile` warns when it is missing; it never
patches anything itself). With two or more workers, `fit`, `evaluate` and
`predict` fail in two places of `keras/src/backend/tensorflow/trainer.py`
(Keras 3.15.1, TensorFlow 2.21.0):

1. `TensorFlowTrainer._maybe_symbolic_build` averages the first distributed
   batch with `strategy.reduce("MEAN", batch, axis=None)` only to learn its
   shapes. MWMS's cross-device reduce accepts one tensor, not a nested batch:
   `ValueError: Attempt to convert a value ({'a': PerReplica:{...}}) with an
   unsupported type (<class 'dict'>) to a Tensor.`
   The same averaging breaks `MirroredStrategy` whenever the FIRST batch does
   not split evenly over the replicas (e.g. `evaluate` on 25 examples with
   2 replicas): `InvalidArgumentError: Inputs to operation AddN of type AddN
   must have the same size and shape. Input 0: [13,2] != input 1: [12,2]`
   (reported in keras-team/keras#19246). G-Blend's callback evaluates small
   held-out sets, so it hits this.
2. `reduce_per_replica` reduces every step's scalar metric results with
   `strategy.reduce("MEAN", value, axis=0)` under multi-worker MWMS:
   `ValueError: Invalid reduction dimension 0 for input with 0 dimensions.`

The symbolic build then takes the first local replica's batch (it only needs
shapes and dtypes; no collective is launched), and under multi-worker MWMS step
results are averaged across replicas element-wise,
`strategy.reduce("MEAN", value, axis=None)`, which is what Keras does for
`MirroredStrategy`. Without a strategy, the replacements hand every call to
Keras's own code. The patch cannot be scoped to one model: `reduce_per_replica`
is a module-level function called from inside Keras's train-step closures. It
is applied only on the versions it was verified on (`VERIFIED_VERSIONS`);
`tests/tf/test_distribute_fixes.py` fails when the upstream bugs stop reproducing
there, so the fix can be dropped.
"""

from __future__ import annotations

import warnings

import keras

from keras_gblend.common.strategy_check import (
    PATCHED as _ORIGINALS,
)
from keras_gblend.common.strategy_check import (  # noqa: F401 (public here)
    check_compatibility,
    fixes_applied,
)
from keras_gblend.common.tf_gate import require_tensorflow

tf = require_tensorflow(
    "keras_gblend.tf.distribute (tf.distribute strategies and fixes)", backend=True
)

STRATEGIES = ("default", "mirrored", "multi_worker")


def get_strategy(name="default", *, devices=None):
    """Returns a `tf.distribute` strategy by name.

    Args:
        name: `"default"` (the default strategy: one device, no replication),
            `"mirrored"` (`MirroredStrategy` over `devices`, by default every
            GPU, or every logical CPU device when there is no GPU and the CPU
            was split into several logical devices, else the one CPU), or
            `"multi_worker"` (`MultiWorkerMirroredStrategy`, configured from the
            `TF_CONFIG` environment variable). Both call `apply_fixes()`
            (a process-wide patch of Keras, see the module docstring).
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
    apply_fixes()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices or _mirrored_devices())
    return tf.distribute.MultiWorkerMirroredStrategy()


def _mirrored_devices():
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        return [d.name for d in gpus]
    return [d.name for d in tf.config.list_logical_devices("CPU")]


UPSTREAM_ISSUES = (
    "https://github.com/keras-team/keras/issues/20585",
    "https://github.com/tensorflow/tensorflow/issues/72388",
    "https://github.com/keras-team/keras/issues/19246",
)
# (keras major.minor, tensorflow major.minor) pairs the fix was verified on.
VERIFIED_VERSIONS = (("3.15", "2.21"),)


def _major_minor(version):
    return ".".join(str(version).split(".")[:2])


def fixes_verified(keras_version=None, tf_version=None):
    """Whether the distribute fixes were verified on these Keras/TF versions.

    Args:
        keras_version: A Keras version string; default: the installed one.
        tf_version: A TensorFlow version string; default: the installed one.

    Returns:
        True if `(keras major.minor, tensorflow major.minor)` is in
        `VERIFIED_VERSIONS`.

    Example:

    >>> fixes_verified("3.15.1", "2.21.0")
    True
    >>> fixes_verified("3.16.0", "2.21.0")
    False
    """
    if keras_version is None:
        keras_version = keras.__version__
    if tf_version is None:
        tf_version = tf.__version__
    pair = (_major_minor(keras_version), _major_minor(tf_version))
    return pair in VERIFIED_VERSIONS


def apply_fixes(*, force=False):
    """Makes Keras `fit`/`evaluate`/`predict` work under MWMS and uneven batches.

    A process-wide patch of two private Keras functions (see the module
    docstring), explicit and idempotent: call it once, before `fit`, in every
    process; `get_strategy` calls it for `"mirrored"` and `"multi_worker"`.
    Without a strategy the replacements hand every call to Keras's own code.

    Args:
        force: Apply even on versions the fix was not verified on.

    Returns:
        True if the fix is in effect, False if it was not applied because the
        installed versions are not in `VERIFIED_VERSIONS` (a `UserWarning` then
        says so; check whether keras-team/keras#20585 was fixed upstream).

    Example:

    >>> apply_fixes()
    True
    >>> remove_fixes()
    """
    if _ORIGINALS:
        return True
    if not force and not fixes_verified():
        warnings.warn(
            "keras_gblend.tf.distribute: the tf.distribute fixes were "
            f"verified on (keras, tensorflow) {list(VERIFIED_VERSIONS)}, not on "
            f"keras {keras.__version__} / tensorflow {tf.__version__}; it was "
            f"not applied. See {UPSTREAM_ISSUES[0]} (fixed upstream?) or pass "
            "force=True.",
            UserWarning,
            stacklevel=2,
        )
        return False
    from keras.src.backend.tensorflow import trainer

    _ORIGINALS["reduce_per_replica"] = trainer.reduce_per_replica
    _ORIGINALS["_maybe_symbolic_build"] = (
        trainer.TensorFlowTrainer._maybe_symbolic_build
    )
    trainer.reduce_per_replica = _fixed_reduce_per_replica
    trainer.TensorFlowTrainer._maybe_symbolic_build = _fixed_maybe_symbolic_build
    return True


def remove_fixes():
    """Restores Keras's own functions (undoes `apply_fixes`).

    Returns:
        None.

    Example:

    >>> remove_fixes()
    >>> fixes_applied()
    False
    """
    if not _ORIGINALS:
        return
    from keras.src.backend.tensorflow import trainer

    trainer.reduce_per_replica = _ORIGINALS.pop("reduce_per_replica")
    trainer.TensorFlowTrainer._maybe_symbolic_build = _ORIGINALS.pop(
        "_maybe_symbolic_build"
    )


def _in_multi_worker_mode(strategy):
    return (
        isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        and strategy.extended._in_multi_worker_mode()
    )


def _fixed_reduce_per_replica(values, strategy, reduction):
    if _in_multi_worker_mode(strategy) and reduction in ("auto", "mean"):
        return keras.tree.map_structure(
            lambda v: strategy.reduce("MEAN", v, axis=None), values
        )
    return _ORIGINALS["reduce_per_replica"](values, strategy, reduction)


def _fixed_maybe_symbolic_build(self, iterator=None, data_batch=None):
    strategy = self._distribute_strategy
    if iterator is not None and strategy is not None:
        for _, _, batches in iterator:
            data_batch = keras.tree.map_structure(
                lambda v: _first_local_value(strategy, v), next(batches)
            )
            break
        iterator = None
    return _ORIGINALS["_maybe_symbolic_build"](
        self, iterator=iterator, data_batch=data_batch
    )


def _first_local_value(strategy, value):
    if isinstance(value, tf.distribute.DistributedValues):
        return strategy.experimental_local_results(value)[0]
    return value
