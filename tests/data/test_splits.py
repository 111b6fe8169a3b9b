"""Tests of the held-out splits: disjointness, stratification, groups, errors."""

import numpy as np
import pytest

from keras_gblend import data


def _pair(n=100, classes=4):
    ids = np.arange(n, dtype=np.float32)
    return {"a": ids[:, None], "b": -ids[:, None]}, (np.arange(n) % classes)


def test_stratified_split_is_disjoint_and_complete():
    x, y = _pair()
    train, heldout = data.holdout_indices(y, heldout_fraction=0.2, seed=3)
    assert np.intersect1d(train, heldout).size == 0
    np.testing.assert_array_equal(
        np.sort(np.concatenate([train, heldout])), np.arange(100)
    )
    # 25 examples per class, round(0.2 * 25) = 5 held out from each class.
    np.testing.assert_array_equal(np.bincount(y[heldout]), [5, 5, 5, 5])


def test_holdout_split_never_shares_an_example():
    x, y = _pair()
    (x_train, _), (x_heldout, _) = data.holdout_split((x, y), heldout_fraction=0.3)
    assert not set(x_train["a"][:, 0]) & set(x_heldout["a"][:, 0])
    assert len(x_train["a"]) + len(x_heldout["a"]) == 100
    # Modalities stay aligned row by row.
    np.testing.assert_array_equal(x_heldout["a"], -x_heldout["b"])


def test_grouped_split_keeps_groups_whole():
    _, y = _pair(n=120)
    groups = np.repeat(["ann", "bob", "cy", "dee", "eve", "fay"], 20)
    train, heldout = data.holdout_indices(
        y, heldout_fraction=0.3, groups=groups, seed=0
    )
    assert not set(groups[train]) & set(groups[heldout])
    # 0.3 * 120 = 36: the closest reachable size with groups of 20 is 40.
    assert len(heldout) == 40


def test_grouped_split_with_four_speakers_holds_out_one():
    y = np.arange(2000) % 10
    groups = np.repeat(np.arange(4), 500)
    _, heldout = data.holdout_indices(y, heldout_fraction=0.2, groups=groups, seed=5)
    assert len(np.unique(groups[heldout])) == 1


def test_split_is_deterministic_in_seed():
    _, y = _pair()
    a = data.holdout_indices(y, heldout_fraction=0.2, seed=7)
    b = data.holdout_indices(y, heldout_fraction=0.2, seed=7)
    c = data.holdout_indices(y, heldout_fraction=0.2, seed=8)
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_sample_subset_draws_from_given_data():
    x, y = _pair()
    sx, sy = data.sample_subset((x, y), 10, seed=0)
    assert len(sy) == 10 and set(sx["a"][:, 0]) <= set(x["a"][:, 0])
    assert len(data.sample_subset((x, y), 100)[1]) == 100


def test_sample_subset_larger_than_the_data_warns():
    x, y = _pair()
    with pytest.warns(UserWarning, match="`size` 1000 is larger than the 100 examples"):
        sx, sy = data.sample_subset((x, y), 1000)
    np.testing.assert_array_equal(sy, y)


@pytest.mark.parametrize("fraction", [0, 1, 1.5, -0.1, "0.2", None])
def test_heldout_fraction_outside_open_interval(fraction):
    with pytest.raises(
        ValueError,
        match=r"`heldout_fraction` must be a number in the open interval \(0, 1\)",
    ):
        data.holdout_indices(np.arange(10) % 2, heldout_fraction=fraction)


def test_empty_heldout_set_is_an_error():
    with pytest.raises(ValueError, match="held-out set would be empty"):
        data.holdout_indices(np.array([0, 1, 2, 3]), heldout_fraction=0.1)


def test_groups_of_wrong_length_or_single_group():
    with pytest.raises(
        ValueError, match=r"`groups` must have one id per example, shape \(4,\)"
    ):
        data.holdout_indices(np.arange(4), groups=np.arange(3))
    with pytest.raises(ValueError, match="at least two distinct groups"):
        data.holdout_indices(np.arange(4), groups=np.zeros(4))


@pytest.mark.parametrize(
    ("pair", "match"),
    [
        (([1, 2], [0, 1]), "x must be a non-empty dict"),
        (({"a": np.zeros((3, 2))}, np.zeros(2)), "same number of examples"),
        (({"a": np.zeros((0, 2))}, np.zeros(0)), "is empty"),
        ("not a pair", "must be a pair"),
    ],
)
def test_malformed_data(pair, match):
    with pytest.raises(ValueError, match=match):
        data.holdout_split(pair)
