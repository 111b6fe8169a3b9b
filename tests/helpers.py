"""The small model and data shared by the whole test suite."""

import keras

from keras_gblend import build_gblend_model, data
from keras_gblend.model import encoders


def synthetic_setup(num_train=96, seed=0, learning_rate=0.05, optimizer=None):
    """A compiled two-modality GBlendModel with its trained part and held-out set.

    Synthetic data (`dim_b` 16, 4 classes), a 25 % stratified held-out split,
    8-unit MLP branches, SGD with momentum (or `optimizer`).

    Returns:
        `(model, train, heldout)`, the data as `(x, y)` array pairs.
    """
    ds = data.make_synthetic(num_train=num_train, num_test=8, dim_b=16, seed=seed)
    train, heldout = data.holdout_split(ds.train, heldout_fraction=0.25, seed=seed)
    branches = {
        m: encoders.mlp_encoder(x.shape[1:], units=(8,), name=f"{m}_encoder")
        for m, x in train[0].items()
    }
    model = build_gblend_model(branches, num_classes=ds.num_classes)
    model.compile(
        optimizer=optimizer or keras.optimizers.SGD(learning_rate, momentum=0.9),
        loss="sparse_categorical_crossentropy",
    )
    return model, train, heldout
