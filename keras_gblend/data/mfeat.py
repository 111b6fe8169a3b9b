"""UCI Multiple Features: 2000 handwritten digits described by six feature views.

A real multi-view data set with K = 6 modalities (M. van Breukelen, R. Duin et
al., UCI Machine Learning Repository, "Multiple Features"): 200 examples of each
digit 0-9, each described by Fourier coefficients of the contour (76), profile
correlations (216), Karhunen-Loeve coefficients (64), pixel averages in 2 x 3
windows (240), Zernike moments (47) and morphological features (6).

`mfeat.npz` is built by `tools/build_mfeat.py` (see `MFEAT_NOTICE.md` for the
source, licence and rebuild command). It stores, per view, uint8 codes (`pixel`
exactly; the others quantised per feature as `low + scale * code`, with
`<view>_low` and `<view>_scale` float32 arrays), `label` and `split` (0 = train:
140 per class; 1 = test: 60 per class) int32 `(2000,)`, and `version`.
"""

from __future__ import annotations

import functools
import os

import numpy as np

from keras_gblend.data.av_digits import content_checksum

DEFAULT_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mfeat.npz")
EXPECTED_CHECKSUM = "4f4b447f9f16e38efc3b779dc7e43b84873907594e6372135128a76f3fe0c7a1"
NUM_CLASSES = 10
# View name -> number of features, in the order of the UCI documentation.
VIEWS = {
    "fourier": 76,
    "profile": 216,
    "karhunen_loeve": 64,
    "pixel": 240,
    "zernike": 47,
    "morphological": 6,
}
SPLITS = ("train", "test", "all")
_SPLIT_CODES = {"train": 0, "test": 1}


@functools.lru_cache(maxsize=4)
def _read(path):
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def _decode(raw, view):
    codes = raw[view].astype(np.float64)
    if f"{view}_low" not in raw:
        return codes
    return raw[f"{view}_low"] + raw[f"{view}_scale"] * codes


def mfeat_checksum(path=None):
    """The content checksum of the arrays in `mfeat.npz` (see `content_checksum`).

    Args:
        path: the `.npz` file; defaults to the one shipped with the package.

    Returns:
        The hex SHA-256 digest; equals `EXPECTED_CHECKSUM` for the shipped file.

    Example:
        >>> mfeat_checksum() == EXPECTED_CHECKSUM
        True
    """
    return content_checksum(_read(os.fspath(path or DEFAULT_PATH)))


def load_mfeat(split="train", *, standardize=True, path=None):
    """Loads a split of UCI Multiple Features as a dict of views and labels.

    Args:
        split: `"train"` (1400 examples), `"test"` (600) or `"all"` (2000,
            train first).
        standardize: Standardise each feature with the mean and standard
            deviation of the training split (constant features give 0).
        path: the `.npz` file; defaults to the one shipped with the package.

    Returns:
        `(x, y)`: `x` a dict from view name (the keys of `VIEWS`, in that order)
        to a float32 `(n, features)` array, `y` int32 `(n,)` labels 0-9.

    Raises:
        ValueError: If `split` is not one of `"train"`, `"test"`, `"all"`.

    Example:
        >>> x, y = load_mfeat("test")
        >>> {name: v.shape[1] for name, v in x.items()}["profile"], y.shape
        (216, (600,))
    """
    if split not in SPLITS:
        raise ValueError(f"`split` must be one of {SPLITS}. Received {split!r}.")
    raw = _read(os.fspath(path or DEFAULT_PATH))
    codes = raw["split"]
    # Train rows first, each split in file order.
    rows = np.argsort(codes, kind="stable")
    if split != "all":
        rows = rows[codes[rows] == _SPLIT_CODES[split]]
    x = {}
    for view in VIEWS:
        values = _decode(raw, view)
        if standardize:
            train = values[codes == 0]
            std = train.std(axis=0)
            values = (values - train.mean(axis=0)) / np.where(std > 0, std, 1.0)
        x[view] = values[rows].astype(np.float32)
    return x, raw["label"][rows].astype(np.int32)
