"""The G-Blend state file: its JSON format, files of version 1, `save`, `load`.

The record itself (`BlendState`, `Measurement`, `Estimate`) is
`keras_gblend.blend.state`, which reads and writes the current format's dict
(`to_dict` / `from_dict`); this module is the file: it writes atomically, reads
every version (converting version 1) and names the path in its errors.

File format version 2 (JSON)::

    {"version": 2, "head_names": [...], "initial_weights": [...] or null,
     "measurements": [{"epoch", "train", "heldout", "train_sem", "heldout_sem"}],
     "estimates": [{"epoch", "status", "weights", "d_g", "d_o", "ogr"}],
     "settings": {"preset", "estimator", "weight_scale", "output"} or absent,
     "output_choice": {"mode", "scores", "weights"} or absent}

with one value per head in `head_names` order in every list. `settings` and
`output_choice` (what the callback chose on `V` when training ended) were added
without a version change: files without them read as before, and readers that
do not know them ignore them. Version-1 files (per-head keys such as
`weight_<head>`, measurements counted from -1) are converted when read
(`upgrade_v1`).
"""

from __future__ import annotations

import json

from keras_gblend.blend import state
from keras_gblend.common import io_utils

# Version 1 named the fused head "fused" (`keras_gblend.model.heads.FUSED`)
# and kept the estimates' log quantities as per-head keys, `weight_<head>`, ...
_V1_FUSED = "fused"
_V1_KEYS = {
    quantity: attribute
    for quantity, (kind, attribute) in state.LOG_KEYS.items()
    if kind is state.Estimate
}


def upgrade_v1(data):
    """A version-1 state dict as the version-2 dict it stands for.

    Version 1 counted measurement epochs from -1 (before training) and kept
    one key per head and quantity (`weight_<head>`, `dG_<head>`, ...).

    Raises:
        ValueError: If the dict holds no head names and no estimates, or an
            estimate lacks a key.

    Example:

    >>> v1 = {"version": 1, "head_names": ["a", "fused"], "estimates": [],
    ...       "measurements": [{"epoch": -1, "train": [1, 1], "heldout": [1, 1]}]}
    >>> upgrade_v1(v1)["measurements"][0]["epoch"]
    0
    """
    estimates = data.get("estimates", [])
    heads = list(data.get("head_names") or ())
    if not heads and estimates:
        keys = [k[len("weight_") :] for k in estimates[0] if k.startswith("weight_")]
        heads = sorted(keys, key=lambda h: h == _V1_FUSED)
    if not heads:
        raise ValueError(
            "The G-Blend state (version 1) holds no head names and no estimates."
        )
    try:
        initial = data.get("initial_weights")
        return {
            "version": state.VERSION,
            "head_names": heads,
            "initial_weights": None if not initial else [initial[h] for h in heads],
            "measurements": [
                {"epoch": m["epoch"] + 1, "train": m["train"], "heldout": m["heldout"]}
                for m in data.get("measurements", [])
            ],
            "estimates": [
                {
                    "epoch": e["epoch"],
                    "status": e.get("status", "ok"),
                    **{
                        attribute: [e.get(f"{quantity}_{h}") for h in heads]
                        for quantity, attribute in _V1_KEYS.items()
                    },
                }
                for e in estimates
            ],
        }
    except (KeyError, TypeError) as error:
        raise ValueError(
            f"Malformed G-Blend state (version 1): missing {error}."
        ) from error


def state_from_dict(data):
    """A `BlendState` from a state file's dict of any version (1 or 2).

    Raises:
        ValueError: If the version is unknown or the dict is malformed.
    """
    version = data.get("version", 1)
    if version == 1:
        data = upgrade_v1(data)
    elif version != state.VERSION:
        raise ValueError(
            f"Unknown G-Blend state version {version!r}: this keras_gblend "
            f"reads versions 1 and {state.VERSION}."
        )
    return state.BlendState.from_dict(data)


def save(path, blend_state):
    """Writes `blend_state` to `path` atomically, in the version-2 format.

    Args:
        path: Destination JSON file.
        blend_state: A `BlendState`.

    Raises:
        OSError: If the file cannot be written.

    Example:

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "state.json")
    >>> save(path, state.BlendState(("a", "fused"), (0.5, 0.5)))
    >>> load(path).initial_weights
    (0.5, 0.5)
    """
    io_utils.atomic_write_json(path, blend_state.to_dict())


def load(path):
    """Reads a state file written by `save` (version 2) or by version 1.

    Args:
        path: A JSON file.

    Returns:
        A `BlendState`.

    Raises:
        OSError: If the file cannot be read.
        ValueError: If it is not a G-Blend state, with the path in the message.

    Example:

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "old.json")
    >>> with open(path, "w") as handle:
    ...     _ = handle.write('{"version": 1, "head_names": ["a", "fused"], '
    ...         '"measurements": [{"epoch": -1, "train": [1, 1], "heldout": [1, 1]}],'
    ...         '"estimates": []}')
    >>> load(path).measurements[0].epoch  # version 1 counted from -1
    0
    """
    with open(path) as handle:
        try:
            data = json.load(handle)
        except json.JSONDecodeError as error:
            raise ValueError(
                f"{path!r} is not a JSON G-Blend state: {error}"
            ) from error
    if not isinstance(data, dict) or "estimates" not in data:
        raise ValueError(
            f"{path!r} is not a G-Blend state file (no 'estimates'). "
            "Pass the file written by GBlendCallback(state_path=...)."
        )
    try:
        return state_from_dict(data)
    except ValueError as error:
        raise ValueError(f"{path!r}: {error}") from error
