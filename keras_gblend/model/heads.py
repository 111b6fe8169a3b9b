"""Head names and the checks shared by the models: modalities, branches, weights.

Every multi-head model of the package names its heads by modality plus `FUSED`;
these helpers are the one place that checks modality names, branch sub-models and
blend-weight vectors (used by `GBlendModel`, `build_gblend_model` and
`keras_gblend.baselines.ogm`).
"""

from __future__ import annotations

from collections.abc import Mapping

import keras
import numpy as np
from keras import ops

FUSED = "fused"


def check_modalities(modalities):
    names = tuple(modalities)
    if len(names) < 2:
        raise ValueError(
            "G-Blend needs at least two modalities. "
            f"Received {len(names)}: {list(names)}."
        )
    for name in names:
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(
                "Modality names must be strings that are valid identifiers "
                f"(letters, digits, underscores). Received {name!r}."
            )
        if name == FUSED:
            raise ValueError(
                f"A modality cannot be named {FUSED!r}: that name is reserved for "
                f"the fused head. Received modalities {list(names)}."
            )
    if len(set(names)) != len(names):
        raise ValueError(f"Modality names must be unique. Received {list(names)}.")
    return names


def check_branch(modality, branch):
    if not isinstance(branch, keras.Model):
        raise ValueError(
            f"Branch {modality!r} must be a Keras model. "
            f"Received {type(branch).__name__}."
        )
    try:
        branch_inputs, branch_outputs = branch.inputs, branch.outputs
    except (AttributeError, ValueError):
        branch_inputs = branch_outputs = None
    if not branch_inputs or not branch_outputs:
        raise ValueError(
            f"Branch {modality!r} must be a built functional or Sequential model "
            "with a defined input (start Sequential models with keras.Input)."
        )
    if branch.name in (modality, FUSED) or branch.name.endswith("_head"):
        raise ValueError(
            f"Branch {modality!r} is named {branch.name!r}, which clashes with the "
            "layer names of the G-Blend model (inputs are named by modality, heads "
            f"'<modality>_head'); name it e.g. {modality + '_encoder'!r}."
        )
    if len(branch_inputs) != 1:
        raise ValueError(
            f"Branch {modality!r} must have exactly one input. "
            f"Received {len(branch_inputs)} inputs."
        )
    if len(branch_outputs) != 1 or len(branch_outputs[0].shape) != 2:
        shapes = [tuple(o.shape) for o in branch_outputs]
        raise ValueError(
            f"Branch {modality!r} must output one rank-2 feature tensor "
            f"(batch, features); add a Flatten or pooling layer. Received output "
            f"shapes {shapes}."
        )


def weights_vector(weights, head_names, normalise=True):
    num_heads = len(head_names)
    if weights is None:
        return np.full(num_heads, 1.0 / num_heads)
    if isinstance(weights, Mapping):
        if set(weights) != set(head_names):
            raise ValueError(
                f"Blend weights must have exactly the keys {list(head_names)}. "
                f"Received {sorted(weights)}."
            )
        weights = [weights[name] for name in head_names]
    values = np.asarray(ops.convert_to_numpy(weights), dtype=np.float64).reshape(-1)
    if values.size != num_heads:
        raise ValueError(
            f"Expected {num_heads} blend weights, one per head {list(head_names)}. "
            f"Received {values.size}."
        )
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError(
            f"Blend weights must be finite and >= 0. Received {values.tolist()}."
        )
    if normalise and values.sum() <= 0:
        raise ValueError(f"Blend weights must not all be 0. Received {values}.")
    return values
