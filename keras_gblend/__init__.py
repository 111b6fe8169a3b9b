"""keras_gblend: Gradient-Blending for multi-modal classification in Keras 3.

References:
    Wang, Tran, Feiszli. "What Makes Training Multi-Modal Classification Networks
    Hard?" CVPR 2020. https://arxiv.org/abs/1905.12681
"""

from keras_gblend import blending, data, estimators, inference, state, tuning
from keras_gblend.blending import BlendEstimate, blend_from_losses, blend_weights
from keras_gblend.builder import build_gblend_model
from keras_gblend.callbacks import GBlendCallback, GBlendWarning
from keras_gblend.measure import head_losses
from keras_gblend.models import FUSED, GBlendModel
from keras_gblend.ogm import OGMGEModel, OGMSchedule

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
