"""Data for G-Blend: held-out splits, built-in data sets, tf.data pipelines."""

from keras_gblend.data import audio, av_digits, pipelines
from keras_gblend.data.arrays import check_pair, is_dataset, take
from keras_gblend.data.av_digits import AVDigits, av_digits_dataset, load_av_digits
from keras_gblend.data.pipelines import make_dataset, to_multihead
from keras_gblend.data.splits import holdout_indices, holdout_split, sample_subset
from keras_gblend.data.synthetic import SyntheticData, make_synthetic

__all__ = [
    "AVDigits",
    "SyntheticData",
    "audio",
    "av_digits",
    "av_digits_dataset",
    "load_av_digits",
    "make_dataset",
    "pipelines",
    "to_multihead",
    "check_pair",
    "holdout_indices",
    "holdout_split",
    "is_dataset",
    "make_synthetic",
    "sample_subset",
    "take",
]
