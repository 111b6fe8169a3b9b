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


def memorisable_modality(labels, *, signal, dim=1024, num_classes=None, seed=0):
    """A weak modality that a network memorises example by example.

    Example `i` of class `c` gets `signal * mu_c + z_i`: `mu_c` a fixed random
    unit vector per class, `z_i` a fresh standard normal vector per EXAMPLE.
    The per-example code `z_i` lets a network fit every training example
    (high-dimensional, so the training examples are separable) while it
    carries nothing about unseen examples; only the class signal generalises.
    The knob `signal` moves the modality from noise (0: chance accuracy alone)
    to informative: it builds regime maps such as "a strong real modality plus
    a weak, memorisable one" (RESULTS.md, "What the defaults give") next to
    real data.

    Args:
        labels: `(n,)` class indices of the examples (e.g. a real data set's).
        signal: Norm of each class mean (>= 0): the knob.
        dim: Dimension of the modality.
        num_classes: Number of classes; default `max(labels) + 1`.
        seed: Seed of the class means and the per-example codes.

    Returns:
        A float32 `(n, dim)` array.

    Raises:
        ValueError: If `signal` is negative or `dim` < 1.

    Example:

    >>> x = memorisable_modality(np.array([0, 1, 1]), signal=2.0, dim=64)
    >>> x.shape, x.dtype
    ((3, 64), dtype('float32'))
    """
    if not signal >= 0 or dim < 1:
        raise ValueError(
            f"`signal` must be >= 0 and `dim` >= 1. Received signal={signal!r}, "
            f"dim={dim!r}."
        )
    labels = np.asarray(labels).astype(int)
    num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((num_classes, dim))
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    codes = rng.standard_normal((len(labels), dim))
    return (signal * means[labels] + codes).astype(np.float32)
