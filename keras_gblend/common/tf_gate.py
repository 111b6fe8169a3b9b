"""The one gate in front of the TensorFlow-only parts of keras_gblend.

The core (blending, the model, the callback, estimation, measurement, splits,
synthetic and AV-Digits arrays) is backend-neutral: it runs under
`KERAS_BACKEND=jax` and `KERAS_BACKEND=torch` without TensorFlow installed.
`tf.data` pipelines, audio features, `tf.distribute` fixes and SavedModel
export are TensorFlow's own; their modules call `require_tensorflow` at import
time, so using one without TensorFlow (or, where the Keras backend matters, on
another backend) fails at once with a message saying what to install or set.
It sits in `common`, the lowest layer, because the `tf.data` modules of
`keras_gblend.data` pass through it as well as `keras_gblend.tf`.
"""

from __future__ import annotations

import importlib

import keras

INSTALL_HINT = (
    "pip install 'keras-gblend[tensorflow]' (or any TensorFlow 2.21 build, e.g. "
    "tensorflow[and-cuda] on a GPU machine)"
)


def require_tensorflow(feature, *, backend=False):
    """Imports TensorFlow for a TensorFlow-only feature, or says what is missing.

    Args:
        feature: What needs TensorFlow, for the message, e.g.
            `"keras_gblend.data.pipelines (tf.data input pipelines)"`.
        backend: Also require Keras to run on the TensorFlow backend (needed by
            `tf.distribute` and SavedModel export; `tf.data` pipelines feed any
            backend and only need TensorFlow installed).

    Returns:
        The `tensorflow` module.

    Raises:
        ImportError: If TensorFlow is not installed, or `backend=True` and the
            Keras backend is not `"tensorflow"`; the message names `feature`,
            the backend in use and how to fix it.

    Example:

    >>> tf = require_tensorflow("this example")
    >>> tf.__name__
    'tensorflow'
    """
    try:
        tf = importlib.import_module("tensorflow")
    except ImportError as error:
        raise ImportError(
            f"{feature} needs TensorFlow, which is not installed (Keras backend: "
            f"{keras.backend.backend()!r}). Install it with {INSTALL_HINT}. The "
            "rest of keras_gblend works without it."
        ) from error
    if backend and keras.backend.backend() != "tensorflow":
        raise ImportError(
            f"{feature} needs the TensorFlow Keras backend. Received "
            f"KERAS_BACKEND={keras.backend.backend()!r}. Set KERAS_BACKEND="
            "tensorflow before importing keras (on JAX, use "
            "keras.distribution for data parallelism instead of tf.distribute)."
        )
    return tf
