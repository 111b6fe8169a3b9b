"""`.keras` files saved on one backend load on every backend, blend weights intact.

`tests/fixtures/keras/gblend_<backend>.keras` were saved on TensorFlow, JAX and
PyTorch by `tests/scripts/save_backend_fixture.py`; each test run loads all
three on its own backend (`make test`: TensorFlow; `make test-backends`: JAX and
PyTorch).
"""

import json
import os

import keras
import numpy as np
import pytest

import keras_gblend  # noqa: F401 - registers GBlendModel for loading
from tests.conftest import REPO_ROOT
from tests.helpers import cross_entropy, toy_data, toy_model
from tests.scripts.save_backend_fixture import BLEND_WEIGHTS

FIXTURES = os.path.join(REPO_ROOT, "tests", "fixtures", "keras")


def _check_loaded(model, blend_weights, fused):
    assert model.get_blend_weights() == pytest.approx(blend_weights, abs=1e-7)
    x, y = toy_data(4, seed=1)
    probs = model.predict(x, verbose=0)
    np.testing.assert_allclose(probs["fused"], fused, atol=1e-5)
    # Still compiled with the blend-weight variables as loss weights.
    model.set_blend_weights({"a": 0.0, "b": 0.0, "fused": 1.0})
    loss = model.evaluate(x, y, batch_size=4, verbose=0, return_dict=True)["loss"]
    assert loss == pytest.approx(cross_entropy(probs["fused"], y), rel=1e-5)


@pytest.mark.parametrize("saved_on", ["tensorflow", "jax", "torch"])
def test_keras_file_saved_on_another_backend_loads_with_blend_weights(saved_on):
    path = os.path.join(FIXTURES, f"gblend_{saved_on}.keras")
    with open(path.replace(".keras", ".json")) as handle:
        saved = json.load(handle)
    assert saved["backend"] == saved_on
    assert saved["blend_weights"] == pytest.approx(BLEND_WEIGHTS, abs=1e-7)
    model = keras.saving.load_model(path)
    _check_loaded(model, saved["blend_weights"], saved["fused"])
    # The restored optimizer trains on this backend.
    history = model.fit(*toy_data(), batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_save_and_load_on_this_backend(tmp_path):
    model = toy_model()
    model.set_blend_weights(BLEND_WEIGHTS)
    # The blend weights are saved as weights, not in the compile config.
    assert "loss_weights" not in model.get_compile_config()
    path = str(tmp_path / "model.keras")
    model.save(path)
    fused = model.predict(toy_data(4, seed=1)[0], verbose=0)["fused"]
    _check_loaded(keras.saving.load_model(path), BLEND_WEIGHTS, fused)
