"""`build_gblend_model`: one branch sub-model per modality joined in a `GBlendModel`."""

from __future__ import annotations

from collections.abc import Mapping

import keras
import numpy as np

from keras_gblend.model import fusion as fusion_lib
from keras_gblend.model.gblend_model import GBlendModel
from keras_gblend.model.heads import FUSED, check_branch, check_modalities

# The softmax heads compute in float32 under any mixed-precision policy (Keras's
# mixed-precision guide): the per-example losses G-Blend measures, and the
# probabilities the output modes combine, are then float32.
HEAD_DTYPE = "float32"


def build_gblend_model(
    branches,
    num_classes,
    *,
    fusion="concat",
    fused_hidden_units=None,
    dropout=0.5,
    initial_blend_weights=None,
    name="gblend",
):
    """Joins one feature sub-model per modality into a multi-head `GBlendModel`.

    Each branch gets its own linear softmax classifier (the modality head); the
    branch features are fused (late fusion by concatenation by default) and fed
    to the fused classifier head.

    Args:
        branches: Mapping from modality name to a Keras model with one input and
            one rank-2 output `(batch, features)`. At least two modalities; names
            must be valid Keras names and must not be `"fused"`.
        num_classes: Number of classes (>= 2).
        fusion: `"concat"` (late fusion by concatenation), `"sum"`, or a callable
            mapping a list of feature tensors to one tensor (see
            `keras_gblend.model.fusion`).
        fused_hidden_units: Optional width of a ReLU layer between the fused
            features and the fused classifier.
        dropout: Dropout rate applied to the features before every head.
            Default 0.5: dropout was part of every setting that beat naive
            fusion across the regimes of RESULTS.md ("What the defaults
            give"); 0 turns it off (the paper's G-Blend has none).
        initial_blend_weights: Starting loss weights (mapping or sequence in
            head order); default uniform.
        name: Model name.

    Returns:
        A `GBlendModel` with one input per modality (named by modality) and
        softmax outputs keyed by modality name plus `"fused"`.

    Raises:
        ValueError: If fewer than two modalities are given, a name is invalid,
            a branch is not a Keras model, has several inputs, or its output is
            not rank 2, or `num_classes < 2`.

    Example:

    >>> import keras
    >>> branches = {
    ...     "image": keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)]),
    ...     "audio": keras.Sequential([keras.Input((5,)), keras.layers.Dense(4)]),
    ... }
    >>> model = build_gblend_model(branches, num_classes=3)
    >>> sorted(model.output)
    ['audio', 'fused', 'image']
    """
    if not isinstance(branches, Mapping):
        raise ValueError(
            "`branches` must be a mapping from modality name to a Keras model. "
            f"Received {type(branches).__name__}."
        )
    modalities = check_modalities(branches)
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ValueError(f"`num_classes` must be an int >= 2. Received {num_classes}.")
    fuse = fusion_lib.get(fusion)
    inputs, features, outputs = {}, {}, {}
    for modality in modalities:
        branch = branches[modality]
        check_branch(modality, branch)
        inputs[modality] = keras.Input(
            shape=branch.inputs[0].shape[1:],
            dtype=branch.inputs[0].dtype,
            name=modality,
        )
        features[modality] = branch(inputs[modality])
    for modality in modalities:
        x = features[modality]
        if dropout:
            x = keras.layers.Dropout(dropout, name=f"{modality}_dropout")(x)
        outputs[modality] = keras.layers.Dense(
            num_classes, activation="softmax", name=f"{modality}_head", dtype=HEAD_DTYPE
        )(x)
    fused = fuse([features[m] for m in modalities])
    if fused_hidden_units:
        fused = keras.layers.Dense(
            fused_hidden_units, activation="relu", name="fused_hidden"
        )(fused)
    if dropout:
        fused = keras.layers.Dropout(dropout, name="fused_dropout")(fused)
    outputs[FUSED] = keras.layers.Dense(
        num_classes, activation="softmax", name="fused_head", dtype=HEAD_DTYPE
    )(fused)
    return GBlendModel(
        inputs=inputs,
        outputs=outputs,
        modalities=modalities,
        initial_blend_weights=initial_blend_weights,
        name=name,
    )
