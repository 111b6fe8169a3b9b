"""keras_gblend: Gradient-Blending for multi-modal classification in Keras 3.

The public API is this module: every name the README and docs use is imported
from here (`from keras_gblend import GBlendCallback, build_gblend_model, data`).
The sub-packages (`blend`, `model`, `training`, `report`, `tf`, ...) are where
each name lives; docs/architecture.md maps them. Three sub-namespaces read
better than flat names and stay: `keras_gblend.data` (splits, data sets,
pipelines), `keras_gblend.estimators` (the estimators of the callback) and
`keras_gblend.distribute` (tf.distribute strategies and fixes). OGM-GE, a
competing method kept for comparison, is `keras_gblend.baselines`, not here.

`import keras_gblend` does not import TensorFlow: the TensorFlow-only names
(`export_saved_model`, `distribute`) and `baselines` are imported on first
access (PEP 562), and fail then, with what to install, where TensorFlow is
missing.

Example:

>>> import keras_gblend
>>> estimate = keras_gblend.blend_weights(d_g=[0.2, 0.1], d_o=[0.1, 0.1])
>>> estimate.weights.round(3).tolist()
[0.667, 0.333]
>>> "export_saved_model" in dir(keras_gblend)  # imported on first access
True

References:
    Wang, Tran, Feiszli. "What Makes Training Multi-Modal Classification Networks
    Hard?" CVPR 2020. https://arxiv.org/abs/1905.12681
"""

import importlib

from keras_gblend import data
from keras_gblend.blend import estimators
from keras_gblend.blend.formula import BlendEstimate, blend_from_losses, blend_weights
from keras_gblend.blend.head_copies import HeadCopies, estimate_offline
from keras_gblend.blend.measure import head_losses
from keras_gblend.blend.state import BlendState
from keras_gblend.common.messages import GBlendWarning
from keras_gblend.model.builder import build_gblend_model
from keras_gblend.model.encoders import conv_encoder, mlp_encoder
from keras_gblend.model.gblend_model import GBlendModel
from keras_gblend.model.heads import FUSED
from keras_gblend.model.prediction import fit_combination_weights
from keras_gblend.report.history import BlendHistory, read_history, write_history_csv
from keras_gblend.report.plot import (
    plot_all,
    plot_deltas,
    plot_losses,
    plot_weight_runs,
    plot_weights,
)
from keras_gblend.training.callback import GBlendCallback
from keras_gblend.training.logs import CSVLogger
from keras_gblend.training.tuning import select_learning_rate

__version__ = "0.1.0"

# Imported on first access, not with the package: name -> (module, attribute).
_LAZY = {
    "baselines": ("keras_gblend.baselines", None),  # OGM-GE
    "distribute": ("keras_gblend.tf.distribute", None),  # TensorFlow backend
    "export_saved_model": ("keras_gblend.tf.export", "export_saved_model"),  # same
}


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    return module if attribute is None else getattr(module, attribute)


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


# The eager names: `from keras_gblend import *` does not import TensorFlow.
__all__ = [
    "FUSED",
    "BlendEstimate",
    "BlendHistory",
    "BlendState",
    "CSVLogger",
    "GBlendCallback",
    "GBlendModel",
    "GBlendWarning",
    "HeadCopies",
    "blend_from_losses",
    "blend_weights",
    "build_gblend_model",
    "conv_encoder",
    "data",
    "estimate_offline",
    "estimators",
    "fit_combination_weights",
    "head_losses",
    "mlp_encoder",
    "plot_all",
    "plot_deltas",
    "plot_losses",
    "plot_weight_runs",
    "plot_weights",
    "read_history",
    "select_learning_rate",
    "write_history_csv",
]
