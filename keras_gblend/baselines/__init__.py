"""Competing methods, kept to compare G-Blend with; not part of G-Blend.

Modules:
    ogm: OGM-GE (Peng et al., CVPR 2022), on-the-fly gradient modulation with
        generalisation enhancement, as a `keras.Model` (docs/ogm_ge.md).

Example:

>>> from keras_gblend.baselines import OGMGEModel, OGMSchedule
>>> OGMSchedule.__module__
'keras_gblend.baselines.ogm'
"""

from keras_gblend.baselines.ogm import OGMGEModel, OGMSchedule

__all__ = ["OGMGEModel", "OGMSchedule"]
