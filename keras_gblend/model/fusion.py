"""Fusion of per-modality features into the input of the fused head."""

from __future__ import annotations

import keras

FUSIONS = ("concat", "sum")


def get(fusion):
    """Returns a function mapping a list of feature tensors to one fused tensor.

    Args:
        fusion: `"concat"` (late fusion by concatenation, the paper's default),
            `"sum"` (element-wise sum; every branch must output the same width),
            or a callable taking the list of feature tensors.

    Returns:
        A callable `features -> tensor`.

    Raises:
        ValueError: If `fusion` is an unknown name or not callable.

    Example:

    >>> import keras
    >>> fuse = get("concat")
    >>> fuse([keras.Input((3,)), keras.Input((2,))]).shape
    (None, 5)
    """
    if callable(fusion):
        return fusion
    if fusion == "concat":
        return lambda features: keras.layers.Concatenate(name="fusion")(features)
    if fusion == "sum":
        return lambda features: keras.layers.Add(name="fusion")(features)
    raise ValueError(
        f"`fusion` must be one of {list(FUSIONS)} or a callable. Received {fusion!r}."
    )
