"""`tf.data` input pipelines for multi-modal `({modality: x}, label)` examples.

One import for the three sources, each in its own module:

* In-memory arrays: `make_dataset` (`keras_gblend.data.datasets`, which also
  holds `finish`, the steps every pipeline ends with, and `to_multihead`).
* TFRecord files with one feature per modality: `write_tfrecord` and
  `tfrecord_dataset` (`keras_gblend.data.tfrecord`).
* Your own files, e.g. a folder of WAV files and a folder of images paired by
  file name: `pair_files`, then `files_dataset` with one loader per modality
  (`keras_gblend.data.audio.make_audio_map_fn()` for WAV, `image_map_fn()` for
  PNG/JPEG/BMP/GIF) (`keras_gblend.data.files`).

Needs TensorFlow installed; importing it without TensorFlow raises an
`ImportError` that says what to install. Pass `shuffle=False` to `model.fit`
with these data sets (they shuffle themselves).
"""

from keras_gblend.data.datasets import AUTOTUNE, finish, make_dataset, to_multihead
from keras_gblend.data.files import files_dataset, image_map_fn, pair_files
from keras_gblend.data.tfrecord import (
    LABEL_KEY,
    parse_example_fn,
    tfrecord_dataset,
    write_tfrecord,
)

__all__ = [
    "AUTOTUNE",
    "LABEL_KEY",
    "files_dataset",
    "finish",
    "image_map_fn",
    "make_dataset",
    "pair_files",
    "parse_example_fn",
    "tfrecord_dataset",
    "to_multihead",
    "write_tfrecord",
]
