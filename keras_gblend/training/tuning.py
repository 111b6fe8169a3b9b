"""Choosing the learning rate on the held-out set `V`, as the recipe asks.

With SGD, G-Blend's loss weights act as per-head learning-rate factors, so the
learning rate that suits a data set is the one setting the recipe needs chosen
per data set (`RESULTS.md`: every other setting is a package default). Choose it
on `V`, never on test data: one short run per candidate, scored on `V`.
"""

from __future__ import annotations

import dataclasses

from keras_gblend.data import arrays
from keras_gblend.model import prediction

DEFAULT_RATES = (0.003, 0.01, 0.03)


@dataclasses.dataclass(frozen=True)
class Selection:
    """The chosen learning rate and every candidate's accuracy on `V`.

    Attributes:
        learning_rate: The candidate with the best accuracy (ties: the smaller).
        scores: `{learning_rate: accuracy on V}` of the model's output.
    """

    learning_rate: float
    scores: dict


def select_learning_rate(
    build,
    train,
    heldout,
    *,
    epochs,
    rates=DEFAULT_RATES,
    batch_size=64,
    callbacks=None,
    verbose=1,
):
    """Chooses the learning rate on `V`: one run per rate, scored on `V`.

    Each run builds a fresh model with `build(rate)`, trains it on `train` (with
    fresh `callbacks()`, e.g. a new `GBlendCallback`) and scores the model's
    output (`predict_output`, its output mode) on `heldout`. `V` is never trained
    on; a callback may read it (G-Blend's estimate does), as in the final run.

    Args:
        build: `build(learning_rate)` returning a compiled `GBlendModel`, a new
            one at every call.
        train: `(x, y)` arrays the runs train on.
        heldout: `V`, `(x, y)` arrays the runs are scored on.
        epochs: Epochs of every run (the final run's, or fewer).
        rates: Candidate learning rates (default: the grid of `RESULTS.md`).
        batch_size: Batch size of training and scoring.
        callbacks: `callbacks()` returning the list of callbacks of one run
            (called once per run), or None.
        verbose: 1 prints one line per rate; 0 is silent.

    Returns:
        A `Selection`.

    Raises:
        ValueError: For an empty or non-positive `rates`, or when `build`
            does not return a compiled `GBlendModel`.

    Example:

    >>> import keras
    >>> from keras_gblend import build_gblend_model, data
    >>> ds = data.make_synthetic(num_train=64, num_test=8, dim_b=8)
    >>> train, heldout = data.holdout_split(ds.train, heldout_fraction=0.25)
    >>> def build(rate):
    ...     branches = {m: keras.Sequential([keras.Input(x.shape[1:]),
    ...                                      keras.layers.Dense(4)])
    ...                 for m, x in train[0].items()}
    ...     model = build_gblend_model(branches, num_classes=ds.num_classes)
    ...     model.compile(optimizer=keras.optimizers.SGD(rate),
    ...                   loss="sparse_categorical_crossentropy")
    ...     return model
    >>> chosen = select_learning_rate(build, train, heldout, epochs=2,
    ...                               rates=(0.01, 0.1), verbose=0)
    >>> sorted(chosen.scores) == [0.01, 0.1], chosen.learning_rate in (0.01, 0.1)
    (True, True)
    """
    rates = tuple(float(r) for r in rates)
    if not rates or min(rates) <= 0:
        raise ValueError(
            f"`rates` must be one or more positive learning rates. Received {rates}."
        )
    train = arrays.check_pair("train", train)
    x_v, y_v = arrays.check_pair("heldout", heldout)
    scores = {}
    for rate in rates:
        model = build(rate)
        compiled = getattr(model, "optimizer", None) is not None
        if not (hasattr(model, "predict_output") and compiled):
            raise ValueError(
                "`build` must return a compiled GBlendModel (see "
                f"build_gblend_model). Received {type(model).__name__}."
            )
        model.fit(
            *train,
            epochs=epochs,
            batch_size=batch_size,
            callbacks=callbacks() if callbacks else None,
            verbose=0,
        )
        probs = model.predict_output(x_v, batch_size=batch_size)
        scores[rate] = prediction.accuracy(probs, y_v)
        if verbose:
            print(
                f"learning rate {rate:g}: accuracy on V {scores[rate]:.4f}", flush=True
            )
    best = max(scores, key=lambda r: (scores[r], -r))
    return Selection(best, scores)
