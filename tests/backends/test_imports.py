"""`import keras_gblend` needs no TensorFlow; TF-only modules say what they need.

The import check runs in the JAX and PyTorch environments of
`make test-backends`, where TensorFlow is not installed (on the TensorFlow
backend Keras itself imports TensorFlow). The messages are also checked on
TensorFlow, with the backend or the import faked.
"""

import importlib.util
import json

import keras
import pytest

from keras_gblend.common import tf_gate as support
from tests.conftest import REPO_ROOT
from tests.helpers import run_python

TF_ONLY = {
    "keras_gblend.data.pipelines": "tf.data input pipelines",
    "keras_gblend.data.audio": "log-mel audio features",
    "keras_gblend.data.tfrecord": "tf.data",
    "keras_gblend.tf.distribute": "tf.distribute",
    "keras_gblend.tf.export": "SavedModel",
}
CORE = [
    "keras_gblend",
    "keras_gblend.blend.formula",
    "keras_gblend.training.callback",
    "keras_gblend.blend.head_copies",
    "keras_gblend.blend.measure",
    "keras_gblend.model.gblend_model",
    "keras_gblend.model.prediction",
    "keras_gblend.baselines.ogm",
    "keras_gblend.blend.state",
    "keras_gblend.blend.estimators",
    "keras_gblend.data.splits",
    "keras_gblend.data.synthetic",
    "keras_gblend.data.av_digits",
]
CHECK = """
import importlib, json, sys
result = {"backend": None, "tf_after_core": None, "errors": {}}
for name in %r:
    importlib.import_module(name)
import keras
result["backend"] = keras.backend.backend()
result["tf_after_core"] = "tensorflow" in sys.modules
for name in %r:
    try:
        importlib.import_module(name)
        result["errors"][name] = None
    except ImportError as error:
        result["errors"][name] = str(error)
print(json.dumps(result))
"""


def _check(backend):
    env = {"KERAS_BACKEND": backend, "PYTHONPATH": REPO_ROOT, "PATH": "/usr/bin:/bin"}
    out = run_python("-c", CHECK % (CORE, list(TF_ONLY)), env=env, timeout=120).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.skipif(
    keras.backend.backend() == "tensorflow", reason="Keras imports TensorFlow"
)
def test_core_imports_without_tensorflow_and_tf_only_modules_explain():
    has_tf = importlib.util.find_spec("tensorflow") is not None
    backend = keras.backend.backend()
    result = _check(backend)
    assert result["backend"] == backend
    assert result["tf_after_core"] is False
    for name, feature in TF_ONLY.items():
        message = result["errors"][name]
        if has_tf and name not in (
            "keras_gblend.tf.distribute",
            "keras_gblend.tf.export",
        ):
            assert message is None, name  # tf.data feeds any backend
            continue
        assert message and feature in message, (name, message)
        if has_tf:
            assert f"Received KERAS_BACKEND={backend!r}" in message
        else:
            assert "needs TensorFlow, which is not installed" in message
            assert "pip install 'keras-gblend[tensorflow]'" in message


def test_require_tensorflow_names_the_feature_and_the_fix(monkeypatch):
    def no_tensorflow(name):
        raise ImportError(f"No module named {name!r}")

    with monkeypatch.context() as patch:
        patch.setattr(support.importlib, "import_module", no_tensorflow)
        with pytest.raises(ImportError, match=r"^my feature needs TensorFlow, which"):
            support.require_tensorflow("my feature")
    if importlib.util.find_spec("tensorflow") is None:
        return
    monkeypatch.setattr(support.keras.backend, "backend", lambda: "jax")
    assert support.require_tensorflow("tf.data").__name__ == "tensorflow"
    with pytest.raises(ImportError, match="Received KERAS_BACKEND='jax'"):
        support.require_tensorflow("my feature", backend=True)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TF backend")
def test_tf_only_modules_import_on_tensorflow():
    from keras_gblend.data import pipelines
    from keras_gblend.tf import distribute

    assert pipelines.make_dataset.__module__ == "keras_gblend.data.datasets"
    assert distribute.get_strategy("default").num_replicas_in_sync == 1
