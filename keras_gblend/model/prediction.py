"""Output modes: how a `GBlendModel`'s heads are combined into one prediction.

A G-Blend model has one softmax head per modality plus the fused head. Its output
mode says which probabilities a user gets (`GBlendModel.predict_output`, the
exported SavedModel):

* `"fused"`: the fused head (the paper's choice and the default).
* `"mean"`: the unweighted mean of every head's probabilities.
* `"weighted"`: `sum_h w_h p_h` with weights `w` on the simplex FIT ON THE
  HELD-OUT SET `V` (never test data) by `fit_combination_weights`.

A per-example confidence-gated mode (weights `exp(-entropy(p_h))`, as in MLA) was
measured and left out: on AV-Digits (5 seeds) it never beat `"mean"` on G-Blend
models and fell 11.6 points below `"fused"` on naive fusion (docs/inference.md).

Missing modalities: a head can be computed for an example only when all the
modalities it reads are present (a modality head needs its modality, the fused
head needs all of them). Every mode uses the same rule: the mode's weights are
restricted to the heads available for that example and renormalised; when the
restriction leaves no weight (e.g. mode `"fused"` with a modality missing), the
available heads are averaged. All of it is written once, in `combine`, with
`keras.ops`, so the same code runs in `predict_output` and in the SavedModel.

References:
    Wang, Tran, Feiszli. "What Makes Training Multi-Modal Classification Networks
    Hard?" CVPR 2020 (heads and fused head).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np
from keras import ops

MODES = ("fused", "mean", "weighted")
_EPS = 1e-12


def check_mode(mode, weights=None):
    """Validates an output mode and returns it.

    Args:
        mode: One of `MODES`.
        weights: The fitted combination weights, or None if none were fit.

    Returns:
        `mode`.

    Raises:
        ValueError: If `mode` is unknown, or is `"weighted"` with no weights.

    Example:

    >>> check_mode("mean")
    'mean'
    """
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {list(MODES)}. Received {mode!r}.")
    if mode == "weighted" and weights is None:
        raise ValueError(
            "`mode='weighted'` needs combination weights fit on held-out data: "
            "call `model.fit_output_weights(heldout)` first. Received no weights."
        )
    return mode


def combine(probs, mode, weights=None, available=None, fused="fused"):
    """Combines per-head class probabilities into one prediction per example.

    Args:
        probs: Mapping from head name to `(batch, classes)` probabilities: only
            the heads that could be computed.
        mode: One of `MODES`.
        weights: Mapping from head name to weight (mode `"weighted"`).
        available: Optional mapping from head name to a `(batch,)` 0/1 array:
            0 where that head cannot be used for that example (a modality it
            reads is missing). Missing keys mean available everywhere. Every
            example must have at least one available head.
        fused: Name of the fused head.

    Returns:
        A `(batch, classes)` tensor of probabilities (rows sum to 1).

    Raises:
        ValueError: If `mode` is invalid, or `"weighted"` without `weights`.

    Example:

    >>> import numpy as np
    >>> p = {"a": np.array([[0.75, 0.25]]), "fused": np.array([[0.25, 0.75]])}
    >>> np.asarray(combine(p, "mean")).tolist()
    [[0.5, 0.5]]
    >>> missing_fused = {"fused": np.array([0.0])}
    >>> np.asarray(combine(p, "fused", available=missing_fused)).tolist()
    [[0.75, 0.25]]
    """
    check_mode(mode, weights)
    heads = list(probs)
    stacked = ops.stack([ops.cast(probs[h], "float32") for h in heads], axis=1)
    ones = ops.ones_like(stacked[:, :, 0])
    if available is None:
        mask = ones
    else:
        mask = ops.stack(
            [
                ops.cast(available[h], "float32") if h in available else ones[:, i]
                for i, h in enumerate(heads)
            ],
            axis=1,
        )
    if mode == "fused":
        values = [float(h == fused) for h in heads]
    elif mode == "mean":
        values = [1.0] * len(heads)
    else:
        values = [float(weights[h]) for h in heads]
    base = ones * ops.convert_to_tensor(np.asarray(values, "float32"))[None, :]
    gate = base * mask
    total = ops.sum(gate, axis=1, keepdims=True)
    # No weight left on the available heads: average them.
    gate = ops.where(total > 0, gate, mask)
    gate = gate / ops.sum(gate, axis=1, keepdims=True)
    return ops.sum(gate[:, :, None] * stacked, axis=1)


def fit_combination_weights(probs, labels, *, max_iter=1000, tol=1e-9):
    """Fits `"weighted"`-mode weights: the simplex point of least log-loss on `V`.

    Minimises the mean negative log-likelihood `-mean_i log(sum_h w_h p_h[i, y_i])`
    over weights `w >= 0` summing to 1, by the EM iteration for mixture weights
    (`w_h <- mean_i w_h p_h[i, y_i] / sum_j w_j p_j[i, y_i]`): it starts from
    uniform weights, never leaves the simplex, never increases the loss and
    converges to the global minimum (the objective is convex in `w`).
    Deterministic; numpy only. Call it with predictions on the HELD-OUT set `V`
    (never the test set): `GBlendModel.fit_output_weights` does.

    Args:
        probs: Mapping from head name to `(n, classes)` held-out probabilities.
        labels: `(n,)` class indices, or `(n, classes)` one-hot.
        max_iter: Most EM iterations.
        tol: Stop when no weight moves by more than `tol`.

    Returns:
        A dict from head name to a float weight; the weights sum to 1.

    Raises:
        ValueError: If `probs` is empty or its arrays disagree in shape, or
            `labels` does not match them.

    Example:

    >>> import numpy as np
    >>> y = np.array([0, 1, 0, 1])
    >>> good = np.eye(2)[y] * 0.8 + 0.1
    >>> probs = {"a": good, "b": np.full((4, 2), 0.5)}
    >>> {h: round(w, 3) for h, w in fit_combination_weights(probs, y).items()}
    {'a': 1.0, 'b': 0.0}
    """
    if not isinstance(probs, Mapping) or not probs:
        raise ValueError(
            "`probs` must be a non-empty mapping from head name to (n, classes) "
            f"probabilities. Received {type(probs).__name__} {probs!r:.80}."
        )
    arrays = {h: np.asarray(p, np.float64) for h, p in probs.items()}
    shapes = {h: p.shape for h, p in arrays.items()}
    if len(set(shapes.values())) != 1 or len(next(iter(shapes.values()))) != 2:
        raise ValueError(
            f"`probs` must hold (n, classes) arrays of one shape. Received {shapes}."
        )
    n, classes = next(iter(shapes.values()))
    y = np.asarray(labels)
    if y.ndim == 2 and y.shape[-1] == classes:
        y = np.argmax(y, axis=-1)
    y = y.reshape(-1) if y.ndim == 2 and y.shape[-1] == 1 else y
    if y.shape != (n,):
        raise ValueError(
            f"`labels` must have shape ({n},) or ({n}, {classes}) to match `probs`. "
            f"Received shape {np.shape(labels)}."
        )
    y = y.astype(np.int64)
    likelihood = np.stack([p[np.arange(n), y] for p in arrays.values()], axis=1)
    likelihood = np.maximum(likelihood, _EPS)
    weights = np.full(len(arrays), 1.0 / len(arrays))
    transposed = np.ascontiguousarray(likelihood.T)
    for _ in range(max_iter):
        # The mean responsibility of each head, `mean_i w_h L_ih / (L w)_i`,
        # as two matrix-vector products (no (n, heads) temporary per step).
        new = weights * (transposed @ (1.0 / (likelihood @ weights))) / n
        done = np.max(np.abs(new - weights)) < tol
        weights = new
        if done:
            break
    weights /= weights.sum()
    return {h: float(w) for h, w in zip(arrays, weights)}


def availability(modalities, present, missing, batch, fused="fused"):
    """Per head, which examples can use it, from absent keys and `missing` masks.

    Args:
        modalities: The model's modality names.
        present: The modality keys present in the inputs.
        missing: None, or a mapping from modality name to a `(batch,)` boolean
            array, True where that modality is missing for that example (a
            0/1 integer or float array is read as one).
        batch: Number of examples.
        fused: Name of the fused head.

    Returns:
        `(heads, available)`: the heads that can be computed for some example
        (in `modalities + (fused,)` order), and a dict from each of them to a
        `(batch,)` float 0/1 array.

    Raises:
        ValueError: If `missing` has an unknown key or a mask of the wrong shape
            or dtype, or some example has every modality missing.

    Example:

    >>> import numpy as np
    >>> heads, avail = availability(("a", "b"), ["a", "b"],
    ...                             {"b": np.array([True, False])}, 2)
    >>> heads, avail["fused"].tolist()
    (['a', 'b', 'fused'], [0.0, 1.0])
    """
    missing = {} if missing is None else missing
    if not isinstance(missing, Mapping):
        raise ValueError(
            "`missing` must be a dict from modality name to a (batch,) boolean "
            f"array (True = missing). Received {type(missing).__name__}."
        )
    unknown = sorted(set(missing) - set(modalities))
    if unknown:
        raise ValueError(
            f"`missing` keys must be modalities {list(modalities)}. "
            f"Received unknown keys {unknown}."
        )
    if not any(m in present for m in modalities):
        raise ValueError(
            f"The inputs must hold at least one modality of {list(modalities)}. "
            f"Received keys {sorted(present)}."
        )
    has = {}
    for m in modalities:
        if m not in present:
            has[m] = np.zeros(batch, bool)
            continue
        mask = np.asarray(missing.get(m, np.zeros(batch, bool)))
        if mask.dtype.kind in "iuf" and np.isin(mask, (0, 1)).all():
            mask = mask.astype(bool)  # A 0/1 mask, e.g. from a data frame.
        if mask.dtype != bool or mask.shape != (batch,):
            raise ValueError(
                f"`missing[{m!r}]` must be a boolean (or 0/1) array of shape "
                f"({batch},) (True = missing). Received {mask.dtype} array of "
                f"shape {mask.shape}."
            )
        has[m] = ~mask
    none = ~np.any(np.stack([has[m] for m in modalities]), axis=0)
    if np.any(none):
        raise ValueError(
            "Every example needs at least one modality. Received examples with "
            f"all modalities missing at indices {np.flatnonzero(none)[:10].tolist()}."
        )
    has[fused] = np.all(np.stack([has[m] for m in modalities]), axis=0)
    heads = [h for h in (*modalities, fused) if np.any(has[h])]
    return heads, {h: has[h].astype("float32") for h in heads}


def accuracy(probs, labels):
    """Fraction of examples whose most probable class is the label.

    Example:

    >>> accuracy([[0.9, 0.1], [0.4, 0.6]], [0, 0])
    0.5
    """
    y = np.asarray(labels)
    if y.ndim == 2 and y.shape[-1] > 1:
        y = np.argmax(y, axis=-1)
    return float(np.mean(np.argmax(np.asarray(probs), axis=-1) == y.reshape(-1)))


@dataclasses.dataclass(frozen=True)
class OutputChoice:
    """The output mode chosen on `V`, and why.

    Attributes:
        mode: The chosen mode (one of `MODES`).
        scores: `{mode: accuracy on V}`; the `"weighted"` score is cross-fitted
            (weights fit on one half of `V`, scored on the other, both ways).
        weights: The `"weighted"` mode's weights fit on all of `V`.
    """

    mode: str
    scores: dict
    weights: dict

    def describe(self):
        """One line: the chosen mode and every mode's accuracy on `V`.

        Example:

        >>> OutputChoice("mean", {"fused": 0.9, "mean": 0.95}, {}).describe()
        'output mode: mean (accuracy on V: fused 90.0%, mean 95.0%)'
        """
        scores = ", ".join(f"{m} {100 * s:.1f}%" for m, s in self.scores.items())
        return f"output mode: {self.mode} (accuracy on V: {scores})"


def choose_mode(probs, labels, *, fused="fused", seed=0):
    """Chooses the output mode with the best accuracy on the held-out set `V`.

    `"fused"` and `"mean"` have nothing fit, so their accuracy on `V` is an
    honest score. `"weighted"` is fit on `V`, so scoring it on the same `V`
    would favour it: its score is cross-fitted instead (weights fit on one
    half of `V`, accuracy on the other half, and the other way round). Ties go
    to the earlier mode of `MODES` (`fused`, then `mean`): the simpler output
    wins unless a combination is measurably better. Call it with predictions
    on `V`, never on test data (`GBlendModel.select_output_mode` does).

    Args:
        probs: Mapping from head name to `(n, classes)` held-out probabilities,
            the fused head under `fused`.
        labels: `(n,)` class indices, or `(n, classes)` one-hot.
        fused: Name of the fused head.
        seed: Seed of the split of `V` into halves.

    Returns:
        An `OutputChoice`.

    Raises:
        ValueError: As `fit_combination_weights`, or if `V` has fewer than 4
            examples (too few to cross-fit).

    Example:

    >>> import numpy as np
    >>> y = np.arange(8) % 2
    >>> right, wrong = np.eye(2)[y] * 0.8 + 0.1, np.eye(2)[1 - y] * 0.8 + 0.1
    >>> probs = {"a": right, "fused": np.where(np.arange(8)[:, None] < 3, wrong, right)}
    >>> choice = choose_mode(probs, y)
    >>> choice.mode, choice.scores["fused"], choice.scores["weighted"]
    ('weighted', 0.625, 1.0)
    """
    weights = fit_combination_weights(probs, labels)
    y = np.asarray(labels)
    if y.ndim == 2 and y.shape[-1] > 1:
        y = np.argmax(y, axis=-1)
    y = y.reshape(-1)
    if len(y) < 4:
        raise ValueError(
            f"`labels` must hold at least 4 held-out examples to choose an output "
            f"mode. Received {len(y)}."
        )
    arrays = {h: np.asarray(p) for h, p in probs.items()}
    halves = np.array_split(np.random.default_rng(seed).permutation(len(y)), 2)
    correct = 0
    for fit, score in (halves, halves[::-1]):
        w = fit_combination_weights({h: p[fit] for h, p in arrays.items()}, y[fit])
        mixed = sum(w[h] * p[score] for h, p in arrays.items())
        correct += np.sum(np.argmax(mixed, -1) == y[score])
    scores = {
        "fused": accuracy(arrays[fused], y),
        "mean": accuracy(np.mean(list(arrays.values()), axis=0), y),
        "weighted": float(correct / len(y)),
    }
    mode = max(MODES, key=lambda m: (scores[m], -MODES.index(m)))
    return OutputChoice(mode, scores, weights)
