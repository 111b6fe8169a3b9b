"""Export of a trained `GBlendModel` for serving: every output mode, every subset.

`export_saved_model` writes a TensorFlow SavedModel with one serving signature per
output mode and one per usable subset of modalities, each built from the model's
head sub-models (`GBlendModel.head_model`) and the one combination rule
(`keras_gblend.model.prediction.combine`):

* `serving_default`: the model's output mode (`model.output_mode`), every modality.
* `fused`, `mean`, and `weighted` (when `fit_output_weights` was run):
  that mode, every modality.
* `only_<m>` for each modality, `only_<m1>_and_<m2>` ... for each proper subset
  of modalities (in the model's modality order): the inputs of that subset only,
  combined with the model's output mode over the heads they can compute (the
  fused head needs every modality).

Every signature returns `{"probabilities": (batch, classes)}`. Dropout is off. The
blend (loss) weights are not in the SavedModel; the combination weights are
constants in it. To keep training later, save the whole model with
`model.save("model.keras")`: that keeps every head, the blend weights, the output
mode, the combination weights and the optimizer state.
"""

from __future__ import annotations

import itertools
import os

import keras

from keras_gblend.common.tf_gate import require_tensorflow
from keras_gblend.model import prediction
from keras_gblend.model.gblend_model import FUSED, GBlendModel

tf = require_tensorflow("keras_gblend.tf.export (SavedModel export)", backend=True)

DEFAULT = "serving_default"
OUTPUT = "probabilities"


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


def signature_names(model):
    """The SavedModel's signatures, each with the modalities and mode it serves.

    Args:
        model: A `GBlendModel`.

    Returns:
        A dict from signature name to `(modalities, mode)`, in the order
        `serving_default`, the modes, then the subsets (see the module doc).

    Raises:
        ValueError: If `model` is not a `GBlendModel`.

    Example:

    >>> from keras_gblend import build_gblend_model
    >>> branches = {
    ...     m: keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)],
    ...                         name=f"{m}_encoder")
    ...     for m in ("a", "b")
    ... }
    >>> list(signature_names(build_gblend_model(branches, num_classes=2)))
    ['serving_default', 'fused', 'mean', 'only_a', 'only_b']
    """
    if not isinstance(model, GBlendModel):
        raise ValueError(
            f"`model` must be a GBlendModel. Received {type(model).__name__}."
        )
    everything = tuple(model.modalities)
    names = {DEFAULT: (everything, model.output_mode)}
    for mode in prediction.MODES:
        if mode != "weighted" or model.output_weights is not None:
            names[mode] = (everything, mode)
    for size in range(1, len(everything)):
        for subset in itertools.combinations(everything, size):
            names["only_" + "_and_".join(subset)] = (subset, model.output_mode)
    return names


def export_saved_model(model, path, *, verbose=False):
    """Writes a SavedModel serving every output mode and every modality subset.

    Each signature (see `signature_names` and the module doc) takes one named
    input per modality it serves (batch dimension None, the model's dtypes) and
    returns `{"probabilities": (batch, classes)}`, computed by the heads' own
    sub-models (`model.head_model`) and `prediction.combine`, exactly as
    `model.predict_output(x, mode=...)` computes it.

    Args:
        model: A trained `GBlendModel`.
        path: Directory to write; created if missing, overwritten if present.
        verbose: Print Keras's summary of the endpoints.

    Returns:
        `path`, as a string.

    Raises:
        ValueError: If `model` is not a `GBlendModel`.
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
    >>> path = export_saved_model(model, os.path.join(tempfile.mkdtemp(), "s"))
    >>> served = tf.saved_model.load(path)
    >>> served.signatures["only_a"](a=tf.zeros([3, 4]))["probabilities"].shape
    TensorShape([3, 2])
    """
    signatures = signature_names(model)
    path = os.fspath(path)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as error:
        raise OSError(
            f"Cannot create the export directory {path!r}: {error}"
        ) from error
    if not os.access(path, os.W_OK):
        raise OSError(f"Cannot write to the export directory {path!r}.")
    heads = {h: model.head_model(h) for h in model.head_names}
    specs = input_signature(model)
    archive = keras.export.ExportArchive()
    for head in heads.values():
        archive.track(head)
    for name, (modalities, mode) in signatures.items():
        archive.add_endpoint(
            name,
            _serving_function(model, heads, modalities, mode),
            input_signature=[{m: specs[m] for m in modalities}],
        )
    try:
        archive.write_out(path, verbose=verbose)
    except (tf.errors.OpError, OSError) as error:
        raise OSError(f"Cannot write the SavedModel to {path!r}: {error}") from error
    return path


def _serving_function(model, heads, modalities, mode):
    if len(modalities) < len(model.modalities):
        used = list(modalities)  # Modality heads only: the fused head needs all.
    elif mode == "fused":
        used = [FUSED]
    else:
        used = list(model.head_names)
    weights = model.output_weights

    def serve(inputs):
        probs = {
            h: heads[h]({m: inputs[m] for m in heads[h].input}, training=False)
            for h in used
        }
        return {OUTPUT: prediction.combine(probs, mode, weights, fused=FUSED)}

    return serve
