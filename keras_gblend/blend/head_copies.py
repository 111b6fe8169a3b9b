"""Offline and exact-online G-Blend estimation by training copies of sub-models.

The paper's recipes (Algorithms 1-3) estimate each head's overfitting-to-
generalisation behaviour by training the uni-modal sub-models (one branch and its
head) and the naively fused model separately for a few epochs. `HeadCopies`
builds those copies ONCE (one independent copy of the model, one compiled
sub-model and optimizer per head) and, at every estimate, resets them from the
current checkpoint: weights copied in, optimizer state reset, no rebuild and no
re-trace, so memory does not grow with the number of estimates. The copies never
share weights or optimizer state with the main model.
"""

from __future__ import annotations

from collections.abc import Mapping

import keras
import numpy as np

from keras_gblend.blend import estimators, formula, measure, state
from keras_gblend.common import messages
from keras_gblend.data import arrays


def copy_model(model):
    """An independent copy of a `GBlendModel` with the same weights.

    Example:

    >>> import keras
    >>> from keras_gblend import build_gblend_model
    >>> branches = {
    ...     n: keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    ...     for n in ("a", "b")
    ... }
    >>> model = build_gblend_model(branches, num_classes=2)
    >>> twin = copy_model(model)
    >>> twin.trainable_variables[0] is model.trainable_variables[0]
    False
    """
    twin = model.__class__.from_config(model.get_config())
    twin.set_weights(model.get_weights())
    return twin


def _learning_rate(model):
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return None
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


def _fresh_optimizer(model):
    """A new optimizer like `model.optimizer`, with a float learning rate.

    A `LossScaleOptimizer` (what `compile` wraps the optimizer in under a
    `mixed_float16` policy) takes no learning rate of its own: its inner
    optimizer is rebuilt and wrapped again with the same loss-scale settings.
    """
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return keras.optimizers.SGD(learning_rate=0.01, momentum=0.9)
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return keras.optimizers.LossScaleOptimizer(
            _rebuilt(optimizer.inner_optimizer, _learning_rate(model)),
            initial_scale=optimizer.initial_scale,
            dynamic_growth_steps=optimizer.dynamic_growth_steps,
        )
    return _rebuilt(optimizer, _learning_rate(model))


def _rebuilt(optimizer, learning_rate):
    config = optimizer.get_config()
    config["learning_rate"] = learning_rate  # A float, even for schedules.
    return optimizer.__class__.from_config(config)


class HeadCopies:
    """Copies of every head's sub-model, built once, reset per estimate.

    Exact mode's measurer (see `keras_gblend.blend.measure`): built from its
    arguments, which it checks; `setup(model)` builds the copies once;
    `measurements(model, epoch)` resets them from `model`, trains them and
    returns their measurements before and after (`run`), a series of its own
    that the callback does not record (`recorded` is False).

    Args:
        train_data: What the copies train on (the trained part, never `V`):
            `(x, y)` arrays or a batched `tf.data.Dataset` of them.
        train_subset: `T'`, same forms.
        heldout: `V`, same forms.
        epochs: Epochs each copy trains per estimate (the paper's n or N).
        batch_size: Batch size of training and measurement with arrays.

    Raises:
        ValueError: If `epochs < 1` or a data argument is malformed (see
            `measure.check_sets`); in `setup`, if the model is not compiled
            or the data do not fit it.

    Example:

    >>> import keras
    >>> from keras_gblend import build_gblend_model, data
    >>> ds = data.make_synthetic(num_train=64, num_test=8, dim_b=8)
    >>> train, heldout = data.holdout_split(ds.train, heldout_fraction=0.25)
    >>> branches = {
    ...     m: keras.Sequential([keras.Input(x.shape[1:]), keras.layers.Dense(4)])
    ...     for m, x in train[0].items()
    ... }
    >>> model = build_gblend_model(branches, num_classes=ds.num_classes)
    >>> model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    >>> copies = HeadCopies(train, train, heldout, epochs=1)
    >>> copies.setup(model)  # The model is never modified.
    >>> before, after = copies.run(model, epoch=0)
    >>> after.epoch, len(after.heldout)
    (1, 3)

    References:
        Wang, Tran, Feiszli, CVPR 2020, Algorithms 1-3.
    """

    recorded = False

    def __init__(self, train_data, train_subset, heldout, *, epochs, batch_size=64):
        messages.check_int("epochs", epochs, 1)
        self.train_data = arrays.check_data("train_data", train_data)
        self.train_subset, self.heldout = measure.check_sets(train_subset, heldout)
        self.epochs, self.batch_size = epochs, batch_size
        self.head_names, self._subs = None, {}

    def setup(self, model):
        """Builds the copies of `model` (a compiled `GBlendModel`, not modified).

        Raises:
            ValueError: If `model` is not compiled, the data do not fit it, or
                `V` is too small to measure (see
                `keras_gblend.data.arrays.check_heldout_labels`).
        """
        if not isinstance(getattr(model, "loss", None), Mapping):
            raise ValueError(
                "`model` must be compiled with a loss before estimating (its loss "
                "and optimizer are reused), e.g. model.compile(optimizer=keras."
                "optimizers.SGD(0.01, momentum=0.9), loss='sparse_categorical_"
                f"crossentropy'). Received model.loss={getattr(model, 'loss', None)!r}."
            )
        self.head_names = tuple(model.head_names)
        self._twin = copy_model(model)
        self._losses = dict(model.loss)
        self._subs, self._train, self._initial = {}, {}, {}
        for head in self.head_names:
            sub = self._twin.head_model(head)
            sub.compile(optimizer=_fresh_optimizer(model), loss=model.loss[head])
            sub.optimizer.build(sub.trainable_variables)
            self._default_rate = _learning_rate(sub)
            self._subs[head] = sub
            # Not all start at zero (a loss scale, Adagrad's accumulators).
            self._initial[head] = [v.numpy() for v in sub.optimizer.variables]
            self._train[head] = _restrict(self.train_data, list(sub.input))
        # Dropout's seed states are not weights (`set_weights` leaves them) and
        # `set_random_seed` does not reach them: `run(seed=...)` sets them.
        self._seed_states = [
            v for v in self._twin.variables if v.name == "seed_generator_state"
        ]
        # The sub-models share the twin's layers: measuring the twin measures them
        # all with one traced prediction function.
        sets = {"train_subset": self.train_subset, "heldout": self.heldout}
        self._data = measure.prepare_sets(
            self._twin, sets, batch_size=self.batch_size, loss=self._losses
        )

    def measurements(self, model, epoch):
        """`[before, after]`: `run(model, epoch=epoch)` as a list."""
        return list(self.run(model, epoch=epoch))

    def heldout_probabilities(self, model):
        """`(probabilities, labels)` of `model` (not a copy) on `V`."""
        heldout = self._data[1]
        probabilities = measure.head_probabilities(
            model, heldout, batch_size=self.batch_size
        )
        return probabilities, heldout.labels

    def run(self, model, *, epoch, seed=None):
        """Resets every copy from `model` and trains it; measures before and after.

        Args:
            model: The model whose current weights the copies start from.
            epoch: Epochs completed by `model` (recorded in the measurements).
            seed: Optional seed for `keras.utils.set_random_seed` before each
                copy trains; the copies' dropout seed states are reset too, so
                the same checkpoint and seed give the same result.

        Returns:
            `(before, after)`: `state.Measurement`s of the copies at `epoch` and
            after `self.epochs` epochs of training (epoch `epoch + epochs`).
        """
        weights = model.get_weights()
        learning_rate = _learning_rate(model) or self._default_rate
        self._twin.set_weights(weights)
        before = self._measure(epoch)
        rows = []
        for i, (head, sub) in enumerate(self._subs.items()):
            self._twin.set_weights(weights)
            for variable, value in zip(sub.optimizer.variables, self._initial[head]):
                variable.assign(value)
            sub.optimizer.learning_rate = learning_rate  # Reset with the rest.
            if seed is not None:
                keras.utils.set_random_seed(seed)
                rng = np.random.default_rng(seed)
                starts = rng.integers(2**30, size=len(self._seed_states))
                for variable, start in zip(self._seed_states, starts):
                    variable.assign(np.array([start, 0], variable.dtype))
            train = self._train[head]
            if arrays.is_dataset(train):
                sub.fit(train, epochs=self.epochs, shuffle=False, verbose=0)
            else:
                sub.fit(
                    *train, epochs=self.epochs, batch_size=self.batch_size, verbose=0
                )
            m = self._measure(epoch)  # Only row i: the head this copy trained.
            rows.append((m.train[i], m.heldout[i], m.train_sem[i], m.heldout_sem[i]))
        return before, state.Measurement(epoch + self.epochs, *zip(*rows))

    def _measure(self, epoch):
        return measure.measurement(
            self._twin,
            self._data,
            epoch=epoch,
            loss=self._losses,
            batch_size=self.batch_size,
        )


def _restrict(data, keys):
    if arrays.is_dataset(data):
        return data.map(lambda x, y: ({k: x[k] for k in keys}, y))
    x, y = data
    return {k: x[k] for k in keys}, y


def estimate_offline(
    model,
    train_data,
    train_subset,
    heldout,
    *,
    epochs,
    batch_size=64,
    min_weight=0.0,
    overfit_floor=formula.DEFAULT_OVERFIT_FLOOR,
    estimator="paper",
    seed=None,
):
    """Offline G-Blend (the paper's main recipe): weights from sub-model training.

    Trains every uni-modal sub-model and the naively fused model from the main
    model's current (typically initial) weights for `epochs` epochs
    (`HeadCopies`), measures them before and after, and returns the estimate.
    The main model is untouched: assign the weights with
    `model.set_blend_weights(estimate.weights)` and train it with them fixed.

    Args:
        model: A compiled `GBlendModel` (its optimizer config is reused).
        train_data: `(x, y)` arrays or a batched dataset of the trained part.
        train_subset: `T'`, a fixed subset of `train_data`.
        heldout: `V`, the held-out part of the training data.
        epochs: Epochs of sub-model training (the paper's N).
        batch_size: Batch size.
        min_weight: See `formula.blend_weights`.
        overfit_floor: See `formula.blend_weights`.
        estimator: A name in `estimators.ESTIMATORS` or an estimator callable.
        seed: Optional seed set before training each copy.

    Returns:
        A `formula.BlendEstimate`.

    Raises:
        ValueError: See `HeadCopies` and `estimators.get`.

    Example:

    >>> import keras
    >>> from keras_gblend import build_gblend_model, data
    >>> ds = data.make_synthetic(num_train=64, num_test=8, dim_b=8)
    >>> train, heldout = data.holdout_split(ds.train, heldout_fraction=0.25)
    >>> branches = {
    ...     m: keras.Sequential([keras.Input(x.shape[1:]), keras.layers.Dense(4)])
    ...     for m, x in train[0].items()
    ... }
    >>> model = build_gblend_model(branches, num_classes=ds.num_classes)
    >>> model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    >>> est = estimate_offline(model, train, train, heldout, epochs=2)
    >>> est.weights.shape
    (3,)

    References:
        Wang, Tran, Feiszli, CVPR 2020, Algorithms 1-2.
    """
    estimator = estimators.get(estimator)
    copies = HeadCopies(
        train_data, train_subset, heldout, epochs=epochs, batch_size=batch_size
    )
    copies.setup(model)
    return estimator(
        list(copies.run(model, epoch=0, seed=seed)),
        min_weight=min_weight,
        overfit_floor=overfit_floor,
        fallback=None,
    )
