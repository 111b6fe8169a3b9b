"""`GBlendCallback`: online Gradient-Blending inside `model.fit`."""

from __future__ import annotations

import math
import os
import sys
import warnings
import weakref

import keras
import numpy as np

from keras_gblend import blending, estimation, estimators, measure, state
from keras_gblend.data import arrays

MODES = ("in_situ", "exact")
WEIGHT_SCALES = ("sum_to_one", "num_heads")
# Optimizers that rescale each parameter's gradient and so largely cancel loss weights.
ADAPTIVE_OPTIMIZERS = (
    "Adam", "AdamW", "Adamax", "Nadam", "RMSprop", "Adagrad", "Adadelta",
    "Adafactor", "Lion", "Lamb", "Ftrl", "Muon",
)  # fmt: skip
_SYMBOLS = {"train_subset": "T'", "heldout": "V"}
COLLAPSE_TOLERANCE = 1e-3  # A weight within this of `min_weight` has collapsed.
_OWNERS = weakref.WeakKeyDictionary()  # model -> (callback, params of its fit)


class GBlendWarning(UserWarning):
    """Warns that a G-Blend estimate or setting is degenerate.

    Example:

    >>> import warnings
    >>> warnings.filterwarnings("ignore", category=GBlendWarning)  # silence them
    """


class AdaptiveOptimizerWarning(GBlendWarning):
    """Warns that an adaptive optimizer (Adam, RMSprop, ...) cancels G-Blend.

    Example:

    >>> import warnings
    >>> warnings.filterwarnings("ignore", category=AdaptiveOptimizerWarning)
    """


class GBlendCallback(keras.callbacks.Callback):
    """Re-weights a `GBlendModel`'s per-head losses from measured overfitting.

    Every `super_epoch` epochs after `warmup_epochs`, the callback measures every
    head's loss on `T'` and `V` (in inference mode, `keras_gblend.measure`),
    estimates blend weights (`keras_gblend.estimators`) and assigns them to the
    model's loss-weight variables (effective at the next step, no re-trace).
    The record lives in `self.state` (`keras_gblend.state.BlendState`; epochs
    counted as epochs completed) and, with `state_path`, in a file.

    Logs (for `History`, `CSVLogger`, `TensorBoard`; pass this callback before
    them): `gblend_weight_<head>` every epoch (the weights in force, summing to
    1); `gblend_dG_<head>`, `gblend_dO_<head>`, `gblend_ogr_<head>` at estimate
    epochs and `gblend_train_loss_<head>`, `gblend_heldout_loss_<head>` at
    measurement epochs only, never a NaN placeholder (like Keras's `val_*` keys
    with `validation_freq`). `CSVLogger` fixes its columns at its first epoch, so
    its file holds those per-estimate keys only if the first epoch has an
    estimate; the state file always holds them (`keras_gblend.history`).
    The estimate line and warnings are printed after Keras's progress bar line.

    Args:
        train_subset: `T'`: `(x, y)` arrays or a batched `tf.data.Dataset`, a fixed
            subset of the training data (see `keras_gblend.data.sample_subset`).
        heldout: `V`: same forms; drawn from the training data, never trained on
            (see `keras_gblend.data.holdout_split`), disjoint from `T'`.
        warmup_epochs: Epochs before the first (reference) measurement (>= 0).
        super_epoch: Epochs between two estimates (>= 1). The defaults
            (2 and 3) are the project's recommended settings, used by the
            experiments; estimating every epoch makes the weights jump.
        min_weight: Smallest weight of a head, in `[0, 1/num_heads]`. Default
            0.05, not the paper's 0: in in-situ mode a head at weight 0 stops
            learning and never gets weight again.
        smoothing: In `[0, 1)`: new weights are
            `(1 - smoothing) * estimate + smoothing * previous`.
        estimator: A name in `keras_gblend.estimators.ESTIMATORS` (default
            `"paper"`: the last two measurements) or an estimator callable.
        weight_scale: `"sum_to_one"` (the paper) or `"num_heads"`: the weights
            assigned to the model are multiplied by the number of heads, so the
            total gradient is comparable to naive training with SGD (logged and
            recorded weights still sum to 1).
        overfit_floor: Floor of `|dO|` (see `blending.blend_weights`).
        batch_size: Batch size of the measurements when data are arrays.
        mode: `"in_situ"` (measure the main model's own heads) or `"exact"` (the
            paper's Algorithm 3: copies of each head's sub-model, built once,
            start from the current weights at every estimate, train
            `exact_epochs` epochs on `train_data` and are measured before and
            after; about K + 2 times the cost of plain training).
        train_data: What exact mode's copies train on (never `heldout`); arrays
            or a batched dataset. Required for `mode="exact"`.
        exact_epochs: Epochs each copy trains in exact mode (the paper's n).
        state_path: Optional JSON file of the state, written atomically after
            each record. If it exists when training starts at `initial_epoch >
            0` (e.g. with `keras.callbacks.BackupAndRestore`, placed after this
            callback), the run continues from it, dropping later records.
        verbose: 1 prints one line per estimate; 0 is silent.

    Raises:
        ValueError: For an invalid argument (here, or in `on_train_begin` for
            what needs the model: min_weight above 1/num_heads, data that do
            not fit the model, labels >= num_classes, a second GBlendCallback).

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
    >>> cb = GBlendCallback(train, heldout, warmup_epochs=0, super_epoch=1,
    ...                     verbose=0)
    >>> history = model.fit(*train, epochs=3, callbacks=[cb], verbose=0)
    >>> [e.epoch for e in cb.state.estimates]
    [1, 2, 3]

    References:
        Wang, Tran, Feiszli. "What Makes Training Multi-Modal Classification
        Networks Hard?" CVPR 2020 (Algorithm 3; in-situ mode measures the main
        model's own heads instead of training copies).
    """

    def __init__(
        self,
        train_subset,
        heldout,
        *,
        warmup_epochs=2,
        super_epoch=3,
        min_weight=0.05,
        smoothing=0.0,
        estimator="paper",
        weight_scale="sum_to_one",
        overfit_floor=blending.DEFAULT_OVERFIT_FLOOR,
        batch_size=256,
        mode="in_situ",
        train_data=None,
        exact_epochs=1,
        state_path=None,
        verbose=1,
    ):
        super().__init__()
        _check_choice("mode", mode, MODES)
        _check_choice("weight_scale", weight_scale, WEIGHT_SCALES)
        if mode == "exact" and train_data is None:
            raise ValueError(
                "`train_data` is required with mode='exact' (the "
                "copies train on it). Received None."
            )
        _check_int("warmup_epochs", warmup_epochs, 0)
        _check_int("super_epoch", super_epoch, 1)
        _check_int("exact_epochs", exact_epochs, 1)
        if not 0 <= smoothing < 1:
            raise ValueError(f"`smoothing` must be in [0, 1). Received {smoothing!r}.")
        if not 0 <= min_weight < 1:
            raise ValueError(
                f"`min_weight` must be in [0, 1/num_heads]. Received {min_weight!r}."
            )
        self.train_subset = arrays.check_data("train_subset", train_subset)
        self.heldout = arrays.check_data("heldout", heldout)
        if train_data is not None:
            train_data = arrays.check_data("train_data", train_data)
        self.train_data = train_data
        _check_overlap(self.train_subset, self.heldout)
        self.estimator = estimators.get(estimator)
        self.warmup_epochs, self.super_epoch = warmup_epochs, super_epoch
        self.min_weight, self.smoothing = min_weight, smoothing
        self.weight_scale, self.overfit_floor = weight_scale, overfit_floor
        self.batch_size, self.mode, self.exact_epochs = batch_size, mode, exact_epochs
        self.state_path, self.verbose = state_path, verbose
        self.state, self._pending, self._started = None, [], False

    @property
    def estimates(self):
        """The estimates so far (`state.Estimate`s), oldest first."""
        return self.state.estimates if self.state else ()

    @property
    def measurements(self):
        """The in-situ measurements so far (`state.Measurement`s), oldest first."""
        return self.state.measurements if self.state else ()

    def on_train_begin(self, logs=None):
        model = self.model
        if not hasattr(model, "set_blend_weights"):
            raise ValueError(
                "GBlendCallback needs a GBlendModel (see build_gblend_"
                f"model). Received {type(model).__name__}."
            )
        owner = _OWNERS.get(model)
        if owner and owner[0] is not self and owner[1] is self.params:
            raise ValueError(
                "Two GBlendCallbacks were passed to one `fit`: both "
                "would assign the weights. Pass one."
            )
        _OWNERS[model] = (self, self.params)
        if self.min_weight > 1 / len(model.head_names):
            raise ValueError(
                f"`min_weight` must be in [0, 1/num_heads] = [0, "
                f"{1 / len(model.head_names):.4g}] for {len(model.head_names)} "
                f"heads. Received {self.min_weight!r}."
            )
        _warn_if_adaptive(model.optimizer)
        if self.mode == "exact":
            self._copies = estimation.HeadCopies(
                model,
                self.train_data,
                self.train_subset,
                self.heldout,
                epochs=self.exact_epochs,
                batch_size=self.batch_size,
            )
        else:
            self._data = tuple(
                measure.prepare(d, model=model, batch_size=self.batch_size, name=n)
                for n, d in (
                    ("train_subset", self.train_subset),
                    ("heldout", self.heldout),
                )
            )
        exists = self.state_path and os.path.exists(self.state_path)
        self.state = state.load(self.state_path) if exists else None
        self._started = False

    def on_epoch_begin(self, epoch, logs=None):
        self._flush()
        if self._started:
            return
        self._started = True
        if self.state is not None and epoch > 0:  # Resumed: drop what came later.
            self.state = self.state.truncate(epoch)
            return
        weights = np.array(list(self.model.get_blend_weights().values()))
        if self.weight_scale == "num_heads":
            weights = weights / weights.sum()
            self.model.set_blend_weights(weights * self._scale)
        self.state = state.BlendState(self.model.head_names, weights)
        if epoch == 0 and self.mode == "in_situ" and self.warmup_epochs == 0:
            self._measure(0)
        self._save()

    def on_epoch_end(self, epoch, logs=None):
        logs = {} if logs is None else logs
        done, heads = epoch + 1, self.model.head_names
        if not math.isfinite(logs.get("loss", 0.0)):
            self.model.stop_training = True
            return self._pending.append(
                GBlendWarning(
                    f"G-Blend: the training loss is {logs['loss']} at "
                    f"epoch {done}: stopped training. Check the training "
                    "inputs for NaN or inf, or lower the learning rate."
                )
            )
        due = (
            done >= self.warmup_epochs
            and (done - self.warmup_epochs) % self.super_epoch == 0
        )
        if due and self.mode == "exact":
            pair = self._copies.run(self.model, epoch=done)
            self._estimate(done, _check_finite(heads, pair))
        elif due:
            measured = self._measure(done)
            logs.update(
                _keyed(heads, train_loss=measured.train, heldout_loss=measured.heldout)
            )
            if len(self.state.measurements) > 1:
                self._estimate(done, self.state.measurements)
        if self.state.estimates and self.state.estimates[-1].epoch == done:
            last = self.state.estimates[-1]
            logs.update(_keyed(heads, dG=last.d_g, dO=last.d_o, ogr=last.ogr))
        logs.update(_keyed(heads, weight=self.state.current_weights))

    def on_train_end(self, logs=None):
        self._flush()
        _OWNERS.pop(self.model, None)

    @property
    def _scale(self):
        return len(self.model.head_names) if self.weight_scale == "num_heads" else 1

    def _measure(self, epoch):
        stats = [
            measure.head_loss_stats(self.model, d, batch_size=self.batch_size)
            for d in self._data
        ]
        record = state.Measurement(
            epoch, stats[0].mean, stats[1].mean, stats[0].sem, stats[1].sem
        )
        _check_finite(self.model.head_names, [record])
        self.state = self.state.add(record)
        self._save()
        return record

    def _estimate(self, epoch, measurements):
        heads, previous = self.model.head_names, np.array(self.state.current_weights)
        estimate = self.estimator(
            list(measurements),
            min_weight=self.min_weight,
            overfit_floor=self.overfit_floor,
            fallback=previous,
        )
        weights = previous  # No head generalised: the weights stay as they were.
        if estimate.status == "ok":
            weights = estimate.weights + self.smoothing * (previous - estimate.weights)
            self.model.set_blend_weights(weights * self._scale)
        record = state.Estimate(
            epoch, estimate.status, weights, estimate.d_g, estimate.d_o, estimate.ogr
        )
        self.state = self.state.add(record)
        self._save()
        collapsed = self._newly_collapsed(weights) if estimate.status == "ok" else []
        self._pending += _messages(heads, record, collapsed, self.min_weight)
        if not self.verbose:
            self._pending = [m for m in self._pending if isinstance(m, Warning)]

    def _newly_collapsed(self, weights):
        """Heads at the minimum now but not at the previous estimate."""
        limit = self.min_weight + COLLAPSE_TOLERANCE
        before = (
            self.state.estimates[-2].weights if len(self.state.estimates) > 1 else ()
        )
        return [
            i
            for i, w in enumerate(weights)
            if w <= limit and not (before and before[i] <= limit)
        ]

    def _flush(self):
        """Prints the lines and warnings of the last epoch, after Keras's bar line."""
        pending, self._pending = self._pending, []
        for item in pending:
            if isinstance(item, Warning):
                warnings.warn(item, stacklevel=_user_stacklevel())
            else:
                print(item, flush=True)

    def _save(self):
        if self.state_path:
            state.save(self.state_path, self.state)


def _check_finite(heads, measurements):
    for record in measurements:
        for name, values in (
            ("train_subset", record.train),
            ("heldout", record.heldout),
        ):
            bad = [h for h, v in zip(heads, values) if not math.isfinite(v)]
            if bad:
                raise ValueError(
                    f"G-Blend measured a non-finite loss on `{name}` "
                    f"({_SYMBOLS[name]}) for head(s) {bad} at epoch {record.epoch}: "
                    f"check `{name}` for "
                    "NaN or inf inputs."
                )
    return measurements


def _messages(heads, record, collapsed, min_weight):
    """The warnings and the printed line of one estimate."""
    found = []
    if record.status == "fallback":
        changes = ", ".join(f"{h} dG={g:+.4g}" for h, g in zip(heads, record.d_g))
        found.append(
            GBlendWarning(
                f"G-Blend at epoch {record.epoch}: no head generalised ({changes}); "
                "kept the weights as they were. Training may overfit everywhere, or "
                "V is "
                "too small to measure a change."
            )
        )
    if collapsed:
        details = ", ".join(
            f"{heads[i]} (weight {record.weights[i]:.4f}, dG={record.d_g[i]:+.4g}, "
            f"dO={record.d_o[i]:+.4g})"
            for i in collapsed
        )
        found.append(
            GBlendWarning(
                f"G-Blend at epoch {record.epoch}: weight collapsed to the minimum "
                f"{min_weight} for {details}. It overfits faster than it generalises "
                "(dG <= 0 or large dO)."
            )
        )
    parts = ", ".join(
        f"{h} {w:.3f} (dG {g:+.4f}, dO {o:+.4f})"
        for h, w, g, o in zip(heads, record.weights, record.d_g, record.d_o)
    )
    return found + [f"G-Blend epoch {record.epoch}: weights {parts}"]


def _keyed(heads, **quantities):
    return {
        f"gblend_{q}_{h}": float(v)
        for q, values in quantities.items()
        for h, v in zip(heads, values)
    }


def _check_int(name, value, minimum):
    if not (isinstance(value, (int, np.integer)) and value >= minimum):
        raise ValueError(f"`{name}` must be an int >= {minimum}. Received {value!r}.")


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(
            f"`{name}` must be one of {list(choices)}. Received {value!r}."
        )


def _check_overlap(train_subset, heldout):
    if arrays.is_dataset(train_subset) or arrays.is_dataset(heldout):
        return
    shared = arrays.count_shared(train_subset, heldout)
    if shared == len(heldout[1]):
        raise ValueError(
            "`heldout` (V) must be held out from the training data, but every one of "
            f"its {shared} examples is also in `train_subset` (T'): the estimate "
            "would mean nothing. Split with keras_gblend.data.holdout_split."
        )
    if shared:
        warnings.warn(
            GBlendWarning(
                f"{shared} of the {len(heldout[1])} examples of `heldout` "
                "(V) are also in `train_subset` (T'): V must not be trained "
                "on. Split with keras_gblend.data.holdout_split."
            ),
            stacklevel=_user_stacklevel(),
        )


def _warn_if_adaptive(optimizer):
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    if type(inner).__name__ in ADAPTIVE_OPTIMIZERS:
        warnings.warn(
            AdaptiveOptimizerWarning(
                f"G-Blend with {type(inner).__name__}: an adaptive optimizer rescales "
                "each parameter's gradient and largely cancels the per-head loss "
                "weights (measured: no better than naive fusion). Use SGD with "
                "momentum, or silence this with warnings.filterwarnings('ignore', "
                "category=keras_gblend.callbacks.AdaptiveOptimizerWarning)."
            ),
            stacklevel=_user_stacklevel(),
        )


def _user_stacklevel():
    """The `stacklevel` that points a warning at the user's code (e.g. `fit`)."""
    libraries = [os.path.dirname(m.__file__) for m in (keras, sys.modules[__package__])]
    if "tensorflow" in sys.modules:
        libraries.append(os.path.dirname(sys.modules["tensorflow"].__file__))
    frame, level = sys._getframe(1), 1
    while frame.f_back and frame.f_code.co_filename.startswith(tuple(libraries)):
        frame, level = frame.f_back, level + 1
    return level
