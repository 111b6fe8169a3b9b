"""A controlled two-modality data set that shows why naive fusion can fail.

Modality `"a"` is low-dimensional: each class is a mixture of Gaussian blobs, so
it is slow to learn and hard to memorise. Modality `"b"` is high-dimensional: each
class has a random mean of norm `sep_b` plus unit Gaussian noise in every
dimension, so a network memorises its training examples quickly and generalises
from them poorly. The knob `sep_b` sets how informative `"b"` is: around 2.5 a
naively fused model falls below the `"a"`-only model; from about 3 naive fusion
already beats `"a"` alone (DESIGN.md, section 4).
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class SyntheticData:
    """Train and test `(x, y)` pairs of the synthetic two-modality task.

    Attributes:
        train: `(x, y)` with `x = {"a": (n, dim_a), "b": (n, dim_b)}` float32 and
            `y` int32 labels.
        test: Same for the test split.
        num_classes: Number of classes.
    """

    train: tuple
    test: tuple
    num_classes: int


def make_synthetic(
    *,
    num_train=2000,
    num_test=2000,
    num_classes=4,
    dim_a=2,
    blobs_per_class=3,
    blob_std=0.1,
    dim_b=1024,
    sep_b=2.5,
    seed=0,
):
    """Generates the synthetic strong-but-slow / weak-but-fast modality pair.

    Args:
        num_train: Training examples.
        num_test: Test examples.
        num_classes: Number of classes (>= 2).
        dim_a: Dimension of modality `"a"` (the slow, well-generalising one).
        blobs_per_class: Gaussian blobs per class in modality `"a"`.
        blob_std: Standard deviation of each blob (centres lie in `[-1, 1]`).
        dim_b: Dimension of modality `"b"` (the quickly memorised one).
        sep_b: Norm of each class mean in modality `"b"`: the imbalance knob.
        seed: Seed; the same seed gives the same data.

    Returns:
        A `SyntheticData`.

    Raises:
        ValueError: If a size is not a positive int or `sep_b < 0`.

    Example:

    >>> data = make_synthetic(num_train=8, num_test=4, dim_b=16)
    >>> data.train[0]["a"].shape, data.train[0]["b"].shape, data.test[1].shape
    ((8, 2), (8, 16), (4,))
    """
    for name, value in dict(
        num_train=num_train,
        num_test=num_test,
        dim_a=dim_a,
        blobs_per_class=blobs_per_class,
        dim_b=dim_b,
    ).items():
        if not (isinstance(value, (int, np.integer)) and value >= 1):
            raise ValueError(f"`{name}` must be an int >= 1. Received {value!r}.")
    if not (isinstance(num_classes, (int, np.integer)) and num_classes >= 2):
        raise ValueError(
            f"`num_classes` must be an int >= 2. Received {num_classes!r}."
        )
    if not sep_b >= 0:
        raise ValueError(f"`sep_b` must be >= 0. Received {sep_b!r}.")
    rng = np.random.default_rng(seed)
    centres_a = rng.uniform(-1, 1, size=(num_classes, blobs_per_class, dim_a))
    means_b = rng.normal(size=(num_classes, dim_b))
    means_b *= sep_b / np.linalg.norm(means_b, axis=1, keepdims=True)

    def sample(n):
        y = rng.integers(0, num_classes, size=n)
        blob = rng.integers(0, blobs_per_class, size=n)
        a = centres_a[y, blob] + blob_std * rng.normal(size=(n, dim_a))
        b = means_b[y] + rng.normal(size=(n, dim_b))
        x = {"a": a.astype(np.float32), "b": b.astype(np.float32)}
        return x, y.astype(np.int32)

    return SyntheticData(
        train=sample(num_train), test=sample(num_test), num_classes=num_classes
    )
