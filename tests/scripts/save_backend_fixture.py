"""Writes the `.keras` fixture of the cross-backend loading test for one backend.

Run once per backend from the repository root, e.g.
    KERAS_BACKEND=jax .venv-jax/bin/python tests/scripts/save_backend_fixture.py
It trains the toy model of `tests/helpers.py` for one epoch with blend weights
`BLEND_WEIGHTS`, saves it to `tests/fixtures/keras/gblend_<backend>.keras` and
writes its fused-head predictions on `toy_data(4, seed=1)` beside it (JSON), which
`tests/backends/test_saving.py` compares on every backend.
"""

import json
import os

import keras

from tests.helpers import toy_data, toy_model

BLEND_WEIGHTS = {"a": 0.2, "b": 0.3, "fused": 0.5}
FIXTURES = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "keras"
)

if __name__ == "__main__":
    backend = keras.backend.backend()
    model = toy_model()
    model.set_blend_weights(BLEND_WEIGHTS)
    model.fit(*toy_data(), batch_size=8, epochs=1, shuffle=False, verbose=0)
    path = os.path.join(FIXTURES, f"gblend_{backend}.keras")
    model.save(path)
    probs = model.predict(toy_data(4, seed=1)[0], verbose=0)
    with open(path.replace(".keras", ".json"), "w") as handle:
        json.dump(
            {
                "backend": backend,
                "keras": keras.__version__,
                "blend_weights": model.get_blend_weights(),
                "fused": probs["fused"].tolist(),
            },
            handle,
            indent=1,
        )
    print(path)
