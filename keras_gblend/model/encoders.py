"""Small feature encoders (modality branches) used by the examples and experiments.

Any Keras model with one input and a rank-2 output can be a branch; these are
sensible defaults for vectors (`mlp_encoder`) and 2-D inputs such as images or
log-mel spectrograms (`conv_encoder`).
"""

from __future__ import annotations

import keras


def mlp_encoder(input_shape, units=(64,), *, dropout=0.5, name=None):
    """A ReLU MLP branch: `input -> Dense(u) -> ... -> features`.

    Args:
        input_shape: Shape of one example, e.g. `(1024,)`.
        units: Width of each hidden layer; the last one is the feature size.
        dropout: Dropout rate after each hidden layer (default 0.5: dropout
            was part of every setting that beat naive fusion in RESULTS.md;
            0 turns it off).
        name: Model name.

    Returns:
        A functional `keras.Model` with a rank-2 output.

    Example:

    >>> mlp_encoder((8,), units=(16, 4)).output.shape
    (None, 4)
    """
    inputs = keras.Input(input_shape)
    x = keras.layers.Flatten()(inputs) if len(input_shape) > 1 else inputs
    for width in units:
        x = keras.layers.Dense(width, activation="relu")(x)
        if dropout:
            x = keras.layers.Dropout(dropout)(x)
    return keras.Model(inputs, x, name=name)


def conv_encoder(
    input_shape,
    filters=(16, 32),
    *,
    units=64,
    pooling="flatten",
    dropout=0.5,
    name=None,
):
    """A small 2-D convolutional branch for images or spectrograms.

    Each block is `Conv2D(3x3, relu) -> MaxPool(2)`; then the feature map is
    flattened (or globally average-pooled) and a ReLU `Dense(units)` gives the
    features.

    Args:
        input_shape: `(height, width, channels)`.
        filters: Filters of each convolutional block.
        units: Feature size.
        pooling: `"flatten"` (keeps where things are: best for small inputs) or
            `"average"` (global average pooling: fewer parameters).
        dropout: Dropout rate before the feature layer (default 0.5, as
            `mlp_encoder`; 0 turns it off).
        name: Model name.

    Returns:
        A functional `keras.Model` with output shape `(batch, units)`.

    Example:

    >>> conv_encoder((28, 28, 1), filters=(4,), units=8).output.shape
    (None, 8)
    """
    inputs = keras.Input(input_shape)
    x = inputs
    for count in filters:
        x = keras.layers.Conv2D(count, 3, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling2D(2)(x)
    if pooling == "flatten":
        x = keras.layers.Flatten()(x)
    elif pooling == "average":
        x = keras.layers.GlobalAveragePooling2D()(x)
    else:
        raise ValueError(
            f"`pooling` must be 'flatten' or 'average'. Received {pooling!r}."
        )
    if dropout:
        x = keras.layers.Dropout(dropout)(x)
    x = keras.layers.Dense(units, activation="relu")(x)
    return keras.Model(inputs, x, name=name)
