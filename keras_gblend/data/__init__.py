"""Data for G-Blend: held-out splits, built-in data sets, tf.data pipelines.

The arrays, splits and data sets here are backend-neutral. The `tf.data`
modules (`datasets`, `tfrecord`, `files`, `audio`, and `make_dataset`,
`to_multihead`) need TensorFlow and are imported on first use, so
`import keras_gblend` does not import TensorFlow. `pipelines`, one namespace
for the three pipeline sources, is imported by name:
`from keras_gblend.data import pipelines`.
"""

import importlib

from keras_gblend.data import av_digits
from keras_gblend.data.arrays import check_pair, is_dataset, take
from keras_gblend.data.av_digits import AVDigits, av_digits_dataset, load_av_digits
from keras_gblend.data.splits import holdout_indices, holdout_split, sample_subset
from keras_gblend.data.synthetic import SyntheticData, make_synthetic

# TensorFlow-only names, imported on first use: name -> (module, attribute).
_LAZY = {
    "audio": ("keras_gblend.data.audio", None),
    "datasets": ("keras_gblend.data.datasets", None),
    "files": ("keras_gblend.data.files", None),
    "tfrecord": ("keras_gblend.data.tfrecord", None),
    "make_dataset": ("keras_gblend.data.datasets", "make_dataset"),
    "to_multihead": ("keras_gblend.data.datasets", "to_multihead"),
}


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    return module if attribute is None else getattr(module, attribute)


__all__ = [
    "AVDigits",
    "SyntheticData",
    "audio",
    "av_digits",
    "av_digits_dataset",
    "check_pair",
    "datasets",
    "files",
    "holdout_indices",
    "holdout_split",
    "is_dataset",
    "load_av_digits",
    "make_dataset",
    "make_synthetic",
    "pipelines",
    "sample_subset",
    "take",
    "tfrecord",
    "to_multihead",
]
