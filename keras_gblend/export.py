"""Export of a trained `GBlendModel` for serving: the fused head only.

Inference uses the fused head (as the paper's released code does). `export_fused`
writes a TensorFlow SavedModel whose only endpoint is the fused head: the
auxiliary modality heads and the blend (loss) weights are not in it, so a server
holds exactly what it needs. To keep training later, save the whole model with
`model.save("model.keras")` instead: that keeps every head, the current blend
weights and the optimizer state.
"""

from __future__ import annotations

import os

import keras
import tensorflow as tf

from keras_gblend.models import FUSED

SIGNATURE = "serving_default"


def fused_model(model):
    """A functional `keras.Model` from the modality inputs to the fused output.

    It shares the layers (and weights) of `model` and holds only the layers on
    the fused head's path.

    Args:
        model: A `GBlendModel` (or any functional model with a dict output that
            has a `"fused"` key and a named input per modality).

    Returns:
        A `keras.Model` with the same dict of inputs and one output, the fused
        head's class probabilities.

    Raises:
        ValueError: If `model` has no `"fused"` output.

    Example:

    >>> from keras_gblend import build_gblend_model
    >>> branches = {
    ...     m: keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)],
    ...                         name=f"{m}_encoder")
    ...     for m in ("a", "b")
    ... }
    >>> fused_model(build_gblend_model(branches, num_classes=2)).output.shape
    (None, 2)
    """
    outputs = getattr(model, "output", None) if isinstance(model, keras.Model) else None
    if not isinstance(outputs, dict) or FUSED not in outputs:
        keys = sorted(outputs) if isinstance(outputs, dict) else None
        raise ValueError(
            f"`model` must be a GBlendModel with a {FUSED!r} output. Received "
            f"{type(model).__name__} with output keys {keys}."
        )
    return keras.Model(model.input, outputs[FUSED], name=f"{model.name}_fused")


def input_signature(model):
    """The serving input signature: one named `tf.TensorSpec` per modality.

    Args:
        model: A `GBlendModel`.

    Returns:
        A dict from modality name to `tf.TensorSpec((None, ...), dtype,
        name=modality)`; the batch dimension is None.

    Raises:
        ValueError: If the model's inputs are not a dict of named inputs.

    Example:

    >>> from keras_gblend import build_gblend_model
    >>> branches = {
    ...     m: keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)],
    ...                         name=f"{m}_encoder")
    ...     for m in ("a", "b")
    ... }
    >>> input_signature(build_gblend_model(branches, num_classes=2))["a"]
    TensorSpec(shape=(None, 4), dtype=tf.float32, name='a')
    """
    inputs = getattr(model, "input", None)
    if not isinstance(inputs, dict):
        raise ValueError(
            "`model` must have a dict of named inputs, one per modality. "
            f"Received inputs of type {type(inputs).__name__}."
        )
    return {
        name: tf.TensorSpec((None, *tensor.shape[1:]), tensor.dtype, name=name)
        for name, tensor in inputs.items()
    }


def export_fused(model, path, *, verbose=False):
    """Writes a SavedModel that serves only the fused head.

    The SavedModel has one signature, `"serving_default"`, with one named input
    per modality (batch dimension None, the dtypes of the model's inputs) and
    one output, `"fused"`: the fused head's class probabilities. Dropout is off.

    Args:
        model: A trained `GBlendModel`.
        path: Directory to write; created if missing, overwritten if present.
        verbose: Print Keras's summary of the endpoint.

    Returns:
        `path`, as a string.

    Raises:
        ValueError: If `model` has no fused output or no dict of named inputs.
        OSError: If `path` cannot be written (the message names it).

    Example:

    >>> import tempfile
    >>> from keras_gblend import build_gblend_model
    >>> branches = {
    ...     m: keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)],
    ...                         name=f"{m}_encoder")
    ...     for m in ("a", "b")
    ... }
    >>> model = build_gblend_model(branches, num_classes=2)
    >>> path = export_fused(model, os.path.join(tempfile.mkdtemp(), "served"))
    >>> served = tf.saved_model.load(path)
    >>> x = {"a": tf.zeros([3, 4]), "b": tf.zeros([3, 4])}
    >>> served.signatures["serving_default"](**x)["fused"].shape
    TensorShape([3, 2])
    """
    fused = fused_model(model)
    signature = input_signature(model)
    path = os.fspath(path)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as error:
        raise OSError(
            f"Cannot create the export directory {path!r}: {error}"
        ) from error
    if not os.access(path, os.W_OK):
        raise OSError(f"Cannot write to the export directory {path!r}.")

    def serve(inputs):
        return {FUSED: fused(inputs, training=False)}

    archive = keras.export.ExportArchive()
    archive.track(fused)
    archive.add_endpoint(SIGNATURE, serve, input_signature=[signature])
    try:
        archive.write_out(path, verbose=verbose)
    except (tf.errors.OpError, OSError) as error:
        raise OSError(f"Cannot write the SavedModel to {path!r}: {error}") from error
    return path
