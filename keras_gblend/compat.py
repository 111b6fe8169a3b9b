"""Fixes that let Keras 3.15 `fit` run under `tf.distribute` where it breaks.

Keras 3 does not support `tf.distribute.MultiWorkerMirroredStrategy` (MWMS):
keras-team/keras#20585, tensorflow/tensorflow#72388. With two or more workers,
`fit`, `evaluate` and `predict` fail in two places of
`keras/src/backend/tensorflow/trainer.py` (Keras 3.15.1, TensorFlow 2.21.0):

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

`apply_distribute_fixes` replaces both: the symbolic build takes the first local
replica's batch (it only needs shapes and dtypes; no collective is launched),
and under multi-worker MWMS step results are averaged across replicas
element-wise, `strategy.reduce("MEAN", value, axis=None)`, which is what Keras
does for `MirroredStrategy`. Without a strategy, nothing changes. The fix patches
private Keras functions, so it is applied only on the versions it was verified
on (`VERIFIED_VERSIONS`); `tests/test_compat.py` fails when the upstream bugs
stop reproducing there, so the fix can be dropped.
"""

from __future__ import annotations

import warnings

import keras

UPSTREAM_ISSUES = (
    "https://github.com/keras-team/keras/issues/20585",
    "https://github.com/tensorflow/tensorflow/issues/72388",
    "https://github.com/keras-team/keras/issues/19246",
)
# (keras major.minor, tensorflow major.minor) pairs the fix was verified on.
VERIFIED_VERSIONS = (("3.15", "2.21"),)

_ORIGINALS = {}


def _major_minor(version):
    return ".".join(str(version).split(".")[:2])


def distribute_fixes_verified(keras_version=None, tf_version=None):
    """Whether the distribute fixes were verified on these Keras/TF versions.

    Args:
        keras_version: A Keras version string; default: the installed one.
        tf_version: A TensorFlow version string; default: the installed one.

    Returns:
        True if `(keras major.minor, tensorflow major.minor)` is in
        `VERIFIED_VERSIONS`.

    Example:

    >>> distribute_fixes_verified("3.15.1", "2.21.0")
    True
    >>> distribute_fixes_verified("3.16.0", "2.21.0")
    False
    """
    if keras_version is None:
        keras_version = keras.__version__
    if tf_version is None:
        import tensorflow as tf

        tf_version = tf.__version__
    pair = (_major_minor(keras_version), _major_minor(tf_version))
    return pair in VERIFIED_VERSIONS


def distribute_fixes_applied():
    """Whether `apply_distribute_fixes` is in effect.

    Returns:
        True between `apply_distribute_fixes()` and `remove_distribute_fixes()`.

    Example:

    >>> isinstance(distribute_fixes_applied(), bool)
    True
    """
    return bool(_ORIGINALS)


def apply_distribute_fixes(*, force=False):
    """Makes Keras `fit`/`evaluate`/`predict` work under MWMS and uneven batches.

    Idempotent. Call it once, before `fit`, in every process;
    `keras_gblend.distribute.get_strategy` calls it for `"mirrored"` and
    `"multi_worker"`. Without a strategy the replacements hand every call to
    Keras's own code.

    Args:
        force: Apply even on versions the fix was not verified on.

    Returns:
        True if the fix is in effect, False if it was not applied because the
        installed versions are not in `VERIFIED_VERSIONS` (a `UserWarning` then
        says so; check whether keras-team/keras#20585 was fixed upstream).

    Example:

    >>> apply_distribute_fixes()
    True
    >>> remove_distribute_fixes()
    """
    if _ORIGINALS:
        return True
    if not force and not distribute_fixes_verified():
        import tensorflow as tf

        warnings.warn(
            "keras_gblend.compat: the tf.distribute fixes were "
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


def remove_distribute_fixes():
    """Restores Keras's own functions (undoes `apply_distribute_fixes`).

    Returns:
        None.

    Example:

    >>> remove_distribute_fixes()
    >>> distribute_fixes_applied()
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
    import tensorflow as tf

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
    import tensorflow as tf

    if isinstance(value, tf.distribute.DistributedValues):
        return strategy.experimental_local_results(value)[0]
    return value
