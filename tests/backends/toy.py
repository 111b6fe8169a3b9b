"""The toy model and data of the backend tests (no TensorFlow needed)."""

import keras
import numpy as np

from keras_gblend import build_gblend_model

DIMS = {"a": 3, "b": 5}
NUM_CLASSES = 3


def toy_data(num=16, seed=0):
    """`(x, y)`: a dict of two float32 modalities and int32 labels."""
    rng = np.random.default_rng(seed)
    x = {m: rng.normal(size=(num, d)).astype("float32") for m, d in DIMS.items()}
    return x, rng.integers(0, NUM_CLASSES, size=num).astype("int32")


def toy_model(seed=0, fused_layer=None, learning_rate=0.1):
    """A compiled two-modality GBlendModel with 4-unit tanh branches, plain SGD.

    Plain SGD (no momentum) makes a zero gradient leave a weight exactly as it
    was. `fused_layer`, if given, is applied to the first branch's features.
    """
    keras.utils.set_random_seed(seed)
    branches = {}
    for m, d in DIMS.items():
        layers = [keras.Input((d,)), keras.layers.Dense(4, activation="tanh")]
        if fused_layer is not None and m == "a":
            layers.append(fused_layer)
        branches[m] = keras.Sequential(layers, name=f"{m}_encoder")
    model = build_gblend_model(branches, num_classes=NUM_CLASSES)
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate),
        loss="sparse_categorical_crossentropy",
    )
    return model


def cross_entropy(probs, y):
    """Mean sparse categorical cross-entropy, in float64 numpy."""
    probs = np.asarray(probs, dtype=np.float64)
    return float(-np.mean(np.log(probs[np.arange(len(y)), y])))
