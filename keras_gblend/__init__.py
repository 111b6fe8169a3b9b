"""keras_gblend: Gradient-Blending for multi-modal classification in Keras 3.

References:
    Wang, Tran, Feiszli. "What Makes Training Multi-Modal Classification Networks
    Hard?" CVPR 2020. https://arxiv.org/abs/1905.12681
"""

from keras_gblend import data
from keras_gblend.baselines.ogm import OGMGEModel, OGMSchedule
from keras_gblend.blend import estimators, formula, state
from keras_gblend.blend.formula import BlendEstimate, blend_from_losses, blend_weights
from keras_gblend.blend.measure import head_losses
from keras_gblend.model import prediction
from keras_gblend.model.builder import build_gblend_model
from keras_gblend.model.gblend_model import FUSED, GBlendModel
from keras_gblend.training import tuning
from keras_gblend.training.callback import GBlendCallback, GBlendWarning

__version__ = "0.1.0"

__all__ = [
    "FUSED",
    "BlendEstimate",
    "GBlendCallback",
    "GBlendModel",
    "GBlendWarning",
    "OGMGEModel",
    "OGMSchedule",
    "blend_from_losses",
    "blend_weights",
    "blending",
    "build_gblend_model",
    "data",
    "estimators",
    "head_losses",
    "inference",
    "state",
    "tuning",
]
