"""Tests for the UCI Multiple Features loader and its builder, tools/build_mfeat.py."""

import os

import numpy as np
import pytest

from keras_gblend.data import mfeat
from keras_gblend.data.av_digits import content_checksum
from tests.helpers import tool


def test_committed_file_is_small_and_matches_checksum():
    assert os.path.getsize(mfeat.DEFAULT_PATH) < 1 * 2**20
    assert mfeat.mfeat_checksum() == mfeat.EXPECTED_CHECKSUM


@pytest.mark.parametrize("split, size", [("train", 1400), ("test", 600)])
def test_shapes_and_balanced_labels(split, size):
    x, y = mfeat.load_mfeat(split)
    assert list(x) == list(mfeat.VIEWS)
    assert {v: a.shape for v, a in x.items()} == {
        v: (size, width) for v, width in mfeat.VIEWS.items()
    }
    assert all(a.dtype == np.float32 and np.isfinite(a).all() for a in x.values())
    assert y.dtype == np.int32
    np.testing.assert_array_equal(np.bincount(y), np.full(10, size // 10))


def test_splits_are_disjoint_and_make_up_all():
    x_all, y_all = mfeat.load_mfeat("all")
    x_train, y_train = mfeat.load_mfeat("train")
    np.testing.assert_array_equal(
        y_all, np.concatenate([y_train, mfeat.load_mfeat("test")[1]])
    )
    np.testing.assert_array_equal(x_all["profile"][:1400], x_train["profile"])

    # The UCI data hold 6 examples twice; the split keeps both copies together,
    # so no test row equals a training row.
    def rows(x):
        return {tuple(r) for r in np.concatenate([x[v] for v in mfeat.VIEWS], axis=1)}

    assert len(rows(x_all)) == 1994
    assert not rows(x_train) & rows(mfeat.load_mfeat("test")[0])


def test_standardisation_uses_train_statistics_and_raw_values_are_kept():
    x_train, _ = mfeat.load_mfeat("train")
    np.testing.assert_allclose(x_train["zernike"].mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(x_train["zernike"].std(axis=0), 1.0, atol=1e-3)
    raw, _ = mfeat.load_mfeat("all", standardize=False)
    # The pixel view holds exact pixel counts 0..6 in 2 x 3 windows.
    assert set(np.unique(raw["pixel"])) <= set(range(7))
    assert raw["pixel"].max() == 6
    # A morphological feature is a count of holes/endpoints: integers, small.
    assert raw["morphological"].min() >= 0


def test_unknown_split_raises():
    with pytest.raises(ValueError, match="`split` must be one of"):
        mfeat.load_mfeat("validation")


def test_quantise_error_is_at_most_half_a_step():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(50, 4)) * [1.0, 100.0, 0.01, 0.0]
    q, low, scale = tool("build_mfeat").quantise(values)
    decoded = low + scale * q.astype(np.float64)
    assert np.all(np.abs(decoded - values) <= scale / 2 + 1e-6 * np.abs(values).max())
    np.testing.assert_array_equal(q[:, 3], 0)


def _write_csvs(folder, seed):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(10), 200)
    builder = tool("build_mfeat")
    for view, width in mfeat.VIEWS.items():
        if view in builder.EXACT_VIEWS:
            values = rng.integers(0, 7, size=(2000, width)).astype(float)
        else:
            values = rng.normal(size=(2000, width))
        table = np.concatenate([values, labels[:, None]], axis=1)
        header = ",".join(str(i) for i in range(width + 1))
        np.savetxt(
            folder / f"mfeat-{builder.FILES[view]}.csv",
            table,
            delimiter=",",
            header=header,
            comments="",
            fmt="%.6g",
        )


def test_build_is_deterministic_and_split_is_stratified(tmp_path):
    builder = tool("build_mfeat")
    _write_csvs(tmp_path, seed=0)
    first, second = builder.build(tmp_path), builder.build(tmp_path)
    assert content_checksum(first) == content_checksum(second)
    builder.write_npz(tmp_path / "a.npz", first)
    builder.write_npz(tmp_path / "b.npz", second)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    split, labels = first["split"], first["label"]
    np.testing.assert_array_equal(np.bincount(labels[split == 0]), np.full(10, 140))
    np.testing.assert_array_equal(np.bincount(labels[split == 1]), np.full(10, 60))
    groups = np.repeat(np.arange(1000), 2)  # pairs of copies stay together
    split = builder.stratified_split(labels, 140, seed=1, groups=groups)
    np.testing.assert_array_equal(split[0::2], split[1::2])
    np.testing.assert_array_equal(np.bincount(labels[split == 0]), np.full(10, 140))
    # The loader reads a built file back to the CSV values (up to quantisation).
    x, y = mfeat.load_mfeat("all", standardize=False, path=tmp_path / "a.npz")
    np.testing.assert_array_equal(np.sort(y), labels)
    assert x["pixel"].max() <= 6


def test_build_rejects_labels_that_disagree(tmp_path):
    _write_csvs(tmp_path, seed=0)
    path = tmp_path / "mfeat-kar.csv"
    lines = path.read_text().splitlines()
    lines[1] = lines[1].rsplit(",", 1)[0] + ",9"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="Labels of"):
        tool("build_mfeat").build(tmp_path)
