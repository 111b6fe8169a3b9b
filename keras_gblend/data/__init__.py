"""Data for G-Blend: held-out splits, built-in data sets, tf.data pipelines."""

from keras_gblend.data.arrays import check_pair, is_dataset, take
from keras_gblend.data.splits import holdout_indices, holdout_split, sample_subset
from keras_gblend.data.synthetic import SyntheticData, make_synthetic

__all__ = [
    "SyntheticData",
    "check_pair",
    "holdout_indices",
    "holdout_split",
    "is_dataset",
    "make_synthetic",
    "sample_subset",
    "take",
]
