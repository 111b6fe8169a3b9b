"""Shared test set-up: quiet TensorFlow, a fresh Keras session and seed per test."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import pytest  # noqa: E402

# Standalone scripts run by tests in subprocesses: never import them here.
collect_ignore_glob = ["scripts/*"]

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def fresh_keras_session():
    """Clears Keras state and seeds every RNG so each test starts the same way."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(1234)
    yield
