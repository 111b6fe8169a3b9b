"""The check `GBlendModel.compile` runs on its `tf.distribute` strategy.

Known broken in Keras 3.15 / TensorFlow 2.21 and refused up front instead of
failing deep inside `fit` (`keras_gblend.distribute` has the story and the
fixes): `jit_compile=True` or `steps_per_execution > 1` with a
`MirroredStrategy` of several replicas, and several replicas without
`keras_gblend.distribute.apply_fixes()` in effect. The record of which Keras
functions `apply_fixes` replaced (`PATCHED`) lives here, with the check that
reads it, so that the model layer checks its strategy without importing the
TensorFlow-only layer above it. Called only on the TensorFlow backend.
"""

from __future__ import annotations

import warnings

from keras_gblend.common.tf_gate import require_tensorflow

# Keras functions replaced by `keras_gblend.distribute.apply_fixes`, by name:
# their originals, put back by `remove_fixes`.
PATCHED = {}


def _tf():
    return require_tensorflow("the tf.distribute strategy check", backend=True)


def fixes_applied():
    """Whether `apply_fixes` is in effect.

    Returns:
        True between `apply_fixes()` and `remove_fixes()`.

    Example:

    >>> isinstance(fixes_applied(), bool)
    True
    """
    return bool(PATCHED)


def check_compatibility(strategy, *, jit_compile=False, steps_per_execution=1):
    """Raises a clear error for strategy settings known to break Keras `fit`.

    Args:
        strategy: A `tf.distribute.Strategy` (e.g. `model.distribute_strategy`).
        jit_compile: The model's `jit_compile` (`True`, `False` or `"auto"`;
            Keras resolves `"auto"` to False under a strategy).
        steps_per_execution: The model's `steps_per_execution`.

    Warns:
        UserWarning: For a strategy of several replicas while `apply_fixes` is
            not in effect (uneven batches and multi-worker `fit` then fail).

    Raises:
        ValueError: For `jit_compile=True` or `steps_per_execution > 1` with a
            `MirroredStrategy` of more than one replica; the message says why,
            names the upstream issue, and what to do.

    Example:

    >>> import tensorflow as tf
    >>> check_compatibility(tf.distribute.get_strategy(), jit_compile=True)
    """
    if strategy.num_replicas_in_sync < 2:
        return
    if not fixes_applied():
        warnings.warn(
            f"{strategy.__class__.__name__} with {strategy.num_replicas_in_sync} "
            "replicas, but keras_gblend.tf.distribute.apply_fixes() is not in effect: "
            "evaluate/predict fail when a first batch does not split evenly over "
            "the replicas, and multi-worker fit fails (keras-team/keras#20585). "
            "Call apply_fixes() before fit (get_strategy does).",
            UserWarning,
            stacklevel=3,
        )
    if not isinstance(strategy, _tf().distribute.MirroredStrategy):
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
