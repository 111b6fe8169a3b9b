"""Held-out splits of the TRAINING data for G-Blend's weight estimates.

G-Blend measures overfitting on a held-out set `V` drawn from the training data,
never from the test or model-selection data. `V` is never trained on: the split
returns disjoint index sets, and `holdout_split` returns the pair that is trained
on and the held-out pair separately.
"""

from __future__ import annotations

import warnings

import numpy as np

from keras_gblend.data import arrays


def _check_fraction(heldout_fraction):
    if not (isinstance(heldout_fraction, (float, int)) and 0 < heldout_fraction < 1):
        raise ValueError(
            "`heldout_fraction` must be a number in the open interval (0, 1). "
            f"Received {heldout_fraction!r}."
        )


def holdout_indices(labels, *, heldout_fraction=0.1, groups=None, seed=0):
    """Indices of the trained part and of the held-out set `V`.

    Without `groups`, the split is random and stratified by label: each class
    contributes `round(heldout_fraction * class_size)` examples to `V`. With
    `groups` (e.g. speaker or video id), whole groups go to `V`, so `V` never
    holds a group seen in training: groups are shuffled with `seed` and added to
    `V` while that brings its size closer to `heldout_fraction` of the data.

    Args:
        labels: Integer class labels, shape `(n,)` (or `(n, 1)`).
        heldout_fraction: Fraction of examples to hold out, in `(0, 1)`.
        groups: Optional group id per example, shape `(n,)`.
        seed: Seed of the random split.

    Returns:
        `(train_indices, heldout_indices)`: sorted, disjoint int64 arrays that
        together cover `range(n)`.

    Raises:
        ValueError: If `heldout_fraction` is outside `(0, 1)`, `groups` has the
            wrong length or a single group, or either part would be empty.

    Example:

    >>> train, heldout = holdout_indices([0, 0, 1, 1, 0, 1], heldout_fraction=0.34)
    >>> len(train), len(heldout)
    (4, 2)
    >>> train, heldout = holdout_indices(
    ...     [0, 1, 0, 1], heldout_fraction=0.5, groups=["u", "u", "v", "v"], seed=1)
    >>> sorted(set(["u", "u", "v", "v"][i] for i in heldout))
    ['u']
    """
    _check_fraction(heldout_fraction)
    labels = np.asarray(labels).reshape(len(labels), -1)[:, 0]
    n = len(labels)
    rng = np.random.default_rng(seed)
    heldout = np.zeros(n, dtype=bool)
    if groups is None:
        for label in np.unique(labels):
            members = rng.permutation(np.flatnonzero(labels == label))
            heldout[members[: int(round(heldout_fraction * len(members)))]] = True
    else:
        groups = np.asarray(groups)
        if groups.shape != (n,):
            raise ValueError(
                f"`groups` must have one id per example, shape ({n},). "
                f"Received shape {groups.shape}."
            )
        unique = np.unique(groups)
        if len(unique) < 2:
            raise ValueError(
                "`groups` must hold at least two distinct groups to split by group. "
                f"Received {len(unique)}: {unique.tolist()}."
            )
        target = heldout_fraction * n
        for group in rng.permutation(unique):
            members = groups == group
            size = heldout.sum()
            if heldout.any() and abs(size + members.sum() - target) >= abs(
                size - target
            ):
                continue
            heldout |= members
    if not heldout.any() or heldout.all():
        part = "held-out set" if not heldout.any() else "trained part"
        raise ValueError(
            f"The {part} would be empty with heldout_fraction={heldout_fraction} "
            f"and {n} examples; use more data or another fraction."
        )
    return np.flatnonzero(~heldout), np.flatnonzero(heldout)


def holdout_split(data, *, heldout_fraction=0.1, groups=None, seed=0):
    """Splits `(x, y)` training data into the trained part and the held-out set.

    Args:
        data: `(x, y)` with `x` a dict of arrays keyed by modality.
        heldout_fraction: Fraction held out, in `(0, 1)`.
        groups: Optional group id per example; whole groups go to `V`.
        seed: Seed of the split.

    Returns:
        `(train_data, heldout_data)`, two `(x, y)` pairs with no example in
        common.

    Raises:
        ValueError: See `holdout_indices`, and for a malformed `data`.

    Example:

    >>> x = {"a": np.arange(10.0), "b": np.arange(10.0)}
    >>> train, heldout = holdout_split((x, np.arange(10) % 2), heldout_fraction=0.2)
    >>> len(train[1]), len(heldout[1])
    (8, 2)
    """
    data = arrays.check_pair("data", data)
    train_idx, heldout_idx = holdout_indices(
        data[1], heldout_fraction=heldout_fraction, groups=groups, seed=seed
    )
    return arrays.take(data, train_idx), arrays.take(data, heldout_idx)


def sample_subset(data, size, *, seed=0):
    """A fixed random subset `T'` of the training data, for training-loss estimates.

    Args:
        data: `(x, y)` pair.
        size: Number of examples, >= 1. A size above the number of examples
            returns them all, with a warning (the caller asked for more than
            exists: a sign of a wrong argument or of too little data).
        seed: Seed of the sample.

    Returns:
        An `(x, y)` pair of `min(size, n)` examples, in their original order.

    Warns:
        UserWarning: If `size` exceeds the number of examples.

    Raises:
        ValueError: If `size < 1` or `data` is malformed.

    Example:

    >>> x, y = sample_subset(({"a": np.arange(10)}, np.arange(10)), 3, seed=0)
    >>> len(y)
    3
    """
    data = arrays.check_pair("data", data)
    if not (isinstance(size, (int, np.integer)) and size >= 1):
        raise ValueError(f"`size` must be an int >= 1. Received {size!r}.")
    n = arrays.num_examples(data)
    if size > n:
        warnings.warn(
            f"sample_subset: `size` {size} is larger than the {n} examples given; "
            f"returning all {n}. Pass size <= {n} to silence this.",
            UserWarning,
            stacklevel=2,
        )
    rng = np.random.default_rng(seed)
    return arrays.take(data, np.sort(rng.permutation(n)[: min(size, n)]))
