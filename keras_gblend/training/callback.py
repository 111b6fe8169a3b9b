"""`GBlendCallback`: online Gradient-Blending inside `model.fit`."""

from __future__ import annotations

import itertools
import math
import os

import keras
import numpy as np

from keras_gblend.blend import estimators, formula, head_copies, measure, state
from keras_gblend.common import messages
from keras_gblend.common.messages import AdaptiveOptimizerWarning, GBlendWarning
from keras_gblend.data import arrays

__all__ = ["AdaptiveOptimizerWarning", "GBlendCallback", "GBlendWarning"]

MODES = ("in_situ", "exact")
OUTPUTS = ("auto", "keep")
# Settings of `preset`; an argument given explicitly wins. "default": what
# measured best across regimes (RESULTS.md, "What the defaults give"); "paper":
# the paper's configuration (weights summing to 1, no fused floor, fused output).
PRESETS = {
    "default": dict(estimator="fused_floor", weight_scale="max_one", output="auto"),
    "paper": dict(estimator="paper", weight_scale="sum_to_one", output="keep"),
}


class GBlendCallback(keras.callbacks.Callback):
    """Re-weights a `GBlendModel`'s per-head losses from measured overfitting.

    Every `super_epoch` epochs after `warmup_epochs`, the callback measures every
    head's loss on `T'` and `V` (in inference mode, `keras_gblend.blend.measure`),
    estimates blend weights (`keras_gblend.blend.estimators`) and assigns them to the
    model's loss-weight variables (effective at the next step, no re-trace).
    The record lives in `self.state` (`keras_gblend.blend.state.BlendState`; epochs
    counted as epochs completed) and, with `state_path`, in a file.

    Logs (for `History`, `CSVLogger`, `TensorBoard`; `GBlendModel.fit` runs
    this callback before the others): `gblend_weight_<head>` every epoch (the
    weights in force, summing to 1); `gblend_dG_<head>`, `gblend_dO_<head>`,
    `gblend_ogr_<head>` at estimate epochs and `gblend_train_loss_<head>`,
    `gblend_heldout_loss_<head>` at measurement epochs only, never a NaN
    placeholder (like Keras's `val_*` keys with `validation_freq`). Keras's
    `CSVLogger` fixes its columns at its first epoch and drops keys that appear
    later; `keras_gblend.training.logs.CSVLogger` adds them. The progress bar shows the
    weights; the estimate's values are in the callback's own line, printed (with
    any warning) after Keras's progress bar line.

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
            learning and never gets weight again. The constructor checks
            `[0, 1)`; the bound `1/num_heads` is checked when `fit` starts
            (the number of heads is the model's), before any epoch. At
            `1/num_heads` every weight is forced equal (a warning says so).
        smoothing: In `[0, 1)`: new weights are
            `(1 - smoothing) * estimate + smoothing * previous`.
        preset: `"default"` or `"paper"`: the settings of `estimator`,
            `weight_scale` and `output` that are not given. `"default"` is what
            measured best across regimes (RESULTS.md, "What the defaults give"):
            the fused head's share floored at `1 / num_heads`
            (`estimator="fused_floor"`), weights scaled to sum to the number of
            heads, and the output mode chosen on `V` when training ends.
            `"paper"` is the paper's configuration: weights summing to 1, no
            floor (`"paper"` estimator), the fused head as output.
        estimator: A name in `keras_gblend.blend.estimators.ESTIMATORS` or an
            estimator callable; None: the preset's (`"fused_floor"` or
            `"paper"`: the last two measurements).
        weight_scale: How the blend weights (they sum to 1, as logged and
            recorded) become the model's loss weights
            (`formula.scale_weights`): `"max_one"` (the largest is 1, so no
            head trains faster than the learning rate), `"num_heads"` (they sum
            to the number of heads) or `"sum_to_one"` (the paper); None: the
            preset's.
        output: `"auto"`: when training ends, set the model's output mode
            (`predict_output`, the SavedModel's `serving_default`) to the one
            with the best accuracy on `V` (`GBlendModel.select_output_mode`:
            `"fused"`, `"mean"` or `"weighted"`, ties to the fused head), record
            the choice in the state and print it; `"keep"`: leave the model's
            output mode as it is; None: the preset's.
        overfit_floor: Floor of `|dO|` (see `formula.blend_weights`).
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
            what needs the model or the data, when `fit` starts, before any
            epoch: min_weight above 1/num_heads, data that do not fit the
            model, labels >= num_classes, a `heldout` of fewer than 2
            examples or of a single class),
            and for a NaN or infinite loss measured on `T'` or `V`.

    Warns:
        AdaptiveOptimizerWarning: Once per `fit` with Adam, RMSprop, Adagrad, ...
            (they largely cancel per-head loss weights). Silence it with
            `warnings.filterwarnings("ignore", category=AdaptiveOptimizerWarning)`.
        GBlendWarning: When no head generalises (the weights then stay exactly
            as they were), when a head's weight reaches `min_weight`, when `V`
            shares examples with `T'`, and when the training loss is NaN or
            infinite (training then stops). When `fit` starts: when
            `min_weight` is `1/num_heads` (every weight forced equal), and when
            `fit(epochs=...)` ends before the first estimate.

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
        preset="default",
        estimator=None,
        weight_scale=None,
        output=None,
        overfit_floor=formula.DEFAULT_OVERFIT_FLOOR,
        batch_size=256,
        mode="in_situ",
        train_data=None,
        exact_epochs=1,
        state_path=None,
        verbose=1,
    ):
        super().__init__()
        _check("preset", preset, preset in PRESETS, f"one of {list(PRESETS)}")
        settings = dict(PRESETS[preset])
        given = dict(estimator=estimator, weight_scale=weight_scale, output=output)
        settings.update({k: v for k, v in given.items() if v is not None})
        estimator, weight_scale, output = (
            settings["estimator"],
            settings["weight_scale"],
            settings["output"],
        )
        _check("mode", mode, mode in MODES, f"one of {list(MODES)}")
        _check("output", output, output in OUTPUTS, f"one of {list(OUTPUTS)}")
        _check(
            "weight_scale",
            weight_scale,
            weight_scale in formula.WEIGHT_SCALES,
            f"one of {list(formula.WEIGHT_SCALES)}",
        )
        for name, value, low in (
            ("warmup_epochs", warmup_epochs, 0),
            ("super_epoch", super_epoch, 1),
            ("exact_epochs", exact_epochs, 1),
        ):
            ok = isinstance(value, (int, np.integer)) and value >= low
            _check(name, value, ok, f"an int >= {low}")
        _check("smoothing", smoothing, 0 <= smoothing < 1, "in [0, 1)")
        _check(
            "min_weight",
            min_weight,
            0 <= min_weight < 1,
            "in [0, 1) here, and at most 1/num_heads (checked when fit starts, "
            "before any epoch)",
        )
        if mode == "exact":
            _check(
                "train_data",
                train_data,
                train_data is not None,
                "given with mode='exact' (the copies train on it)",
            )
            train_data = arrays.check_data("train_data", train_data)
        self.train_subset = arrays.check_data("train_subset", train_subset)
        self.heldout = arrays.check_data("heldout", heldout)
        arrays.check_disjoint(self.train_subset, self.heldout, warn=messages.warn)
        self.estimator = estimators.get(estimator)
        self.preset, self.output = preset, output
        self.settings = dict(
            preset=preset,
            estimator=estimator if isinstance(estimator, str) else repr(estimator),
            weight_scale=weight_scale,
            output=output,
        )
        self.warmup_epochs, self.super_epoch = warmup_epochs, super_epoch
        self.min_weight, self.smoothing = min_weight, smoothing
        self.weight_scale, self.overfit_floor = weight_scale, overfit_floor
        self.batch_size, self.mode, self.train_data = batch_size, mode, train_data
        self.exact_epochs, self.state_path, self.verbose = (
            exact_epochs,
            state_path,
            verbose,
        )
        self.state, self._pending, self._started = None, [], False
        self._diverged = False

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
        num_heads = len(model.head_names)
        _check(
            "min_weight",
            self.min_weight,
            self.min_weight <= 1 / num_heads,
            f"in [0, 1/num_heads] = [0, {1 / num_heads:.4g}] for {num_heads} heads "
            "(checked when fit starts, before any epoch)",
        )
        messages.check_min_weight(self.min_weight, num_heads)
        messages.check_optimizer(model.optimizer)
        if self.mode == "exact":
            self._copies = head_copies.HeadCopies(
                model,
                self.train_data,
                self.train_subset,
                self.heldout,
                epochs=self.exact_epochs,
                batch_size=self.batch_size,
            )
        else:
            sets = {"train_subset": self.train_subset, "heldout": self.heldout}
            self._data = [
                measure.prepare(d, model=model, batch_size=self.batch_size, name=n)
                for n, d in sets.items()
            ]
        _check_run(self)
        exists = self.state_path and os.path.exists(self.state_path)
        self.state = state.load(self.state_path) if exists else None
        self._started = self._diverged = False

    def on_epoch_begin(self, epoch, logs=None):
        self._flush()
        if self._started:
            return
        self._started = True
        if self.state is not None and epoch > 0:  # Resumed: drop what came later.
            heads = self.model.head_names
            _check(
                "state_path",
                self.state_path,
                self.state.head_names == heads,
                f"a state of this model's heads {list(heads)}, not of "
                f"{list(self.state.head_names)}",
            )
            self.state = self.state.truncate(epoch)
            return
        weights = np.array(list(self.model.get_blend_weights().values()))
        weights = weights / weights.sum()
        if self.weight_scale != "sum_to_one":
            self.model.set_blend_weights(
                formula.scale_weights(weights, self.weight_scale)
            )
        self.state = state.BlendState(
            self.model.head_names, weights, settings=self.settings
        )
        if epoch == 0 and self.mode == "in_situ" and self.warmup_epochs == 0:
            self._measure(0)
        self._save()

    def on_epoch_end(self, epoch, logs=None):
        logs = {} if logs is None else logs
        done, heads = epoch + 1, self.model.head_names
        if not math.isfinite(logs.get("loss", 0.0)):
            self.model.stop_training = self._diverged = True
            return self._pending.append(
                GBlendWarning(
                    f"G-Blend: the training loss is {logs['loss']} at epoch {done}: "
                    "stopped training. Check the training inputs for NaN or inf, or "
                    "lower the learning rate."
                )
            )
        since = done - self.warmup_epochs
        if since >= 0 and since % self.super_epoch == 0:
            if self.mode == "exact":
                self._estimate(done, self._copies.run(self.model, epoch=done))
            else:
                last = self._measure(done)
                logs.update(
                    _keyed(heads, train_loss=last.train, heldout_loss=last.heldout)
                )
                if len(self.state.measurements) > 1:
                    self._estimate(done, self.state.measurements)
        if self.state.estimates and self.state.estimates[-1].epoch == done:
            last = self.state.estimates[-1]
            logs.update(_keyed(heads, dG=last.d_g, dO=last.d_o, ogr=last.ogr))
        logs.update(_keyed(heads, weight=self.state.current_weights))

    def on_train_end(self, logs=None):
        if self.output == "auto" and self.state is not None and not self._diverged:
            choice = self.model.select_output_mode(
                arrays.to_pair(self.heldout), batch_size=self.batch_size
            )
            self.state = self.state.with_output(choice)
            self._save()
            if self.verbose:
                self._pending.append(f"G-Blend: {choice.describe()}")
        self._flush()

    def estimates_at(self, epoch):
        """Whether a fresh run estimates after `epoch` completed epochs.

        In-situ mode measures the reference at `warmup_epochs` (before training
        if 0) and estimates every `super_epoch` epochs after it; exact mode
        estimates at `warmup_epochs` (if > 0) and every `super_epoch` after.

        Example:

        >>> pair = lambda v: ({"m": np.full((2, 1), v)}, np.zeros(2, int))
        >>> cb = GBlendCallback(pair(0.0), pair(1.0))  # warm-up 2, super-epoch 3
        >>> [e for e in range(1, 10) if cb.estimates_at(e)]
        [5, 8]
        """
        since = epoch - self.warmup_epochs
        first = 0 if self.mode == "exact" else 1
        return since >= first and since % self.super_epoch == 0

    def _measure(self, epoch):
        record = measure.measurement(
            self.model, self._data, epoch=epoch, batch_size=self.batch_size
        )
        self.state = self.state.add(record)
        self._save()
        return record

    def _estimate(self, epoch, measurements):
        previous = np.array(self.state.current_weights)
        estimate = self.estimator(
            list(measurements),
            min_weight=self.min_weight,
            overfit_floor=self.overfit_floor,
            fallback=previous,
        )
        weights = previous  # No head generalised: the weights stay as they were.
        if estimate.status == "ok":
            weights = estimate.weights + self.smoothing * (previous - estimate.weights)
            self.model.set_blend_weights(
                formula.scale_weights(weights, self.weight_scale)
            )
        before = self.state.estimates[-1] if self.state.estimates else None
        record = state.Estimate(
            epoch, estimate.status, weights, estimate.d_g, estimate.d_o, estimate.ogr
        )
        self.state = self.state.add(record)
        self._save()
        said = messages.estimate_messages(
            self.model.head_names, record, before, self.min_weight
        )
        self._pending += said if self.verbose else said[:-1]

    def _flush(self):
        """Prints the lines and warnings of the last epoch, after Keras's bar line."""
        pending, self._pending = self._pending, []
        for item in pending:
            if isinstance(item, Warning):
                messages.warn(item)
            else:
                print(item, flush=True)

    def _save(self):
        if self.state_path:
            state.save(self.state_path, self.state)


def _keyed(heads, **quantities):
    return {
        f"gblend_{q}_{h}": float(v)
        for q, values in quantities.items()
        for h, v in zip(heads, values)
    }


def _check(name, value, ok, expected):
    if not ok:
        raise ValueError(f"`{name}` must be {expected}. Received {value!r}.")


def _check_run(callback):
    """Checks what only `fit` reveals: `V`'s labels, the number of epochs."""
    labels = None
    if callback.mode == "in_situ":
        labels = callback._data[1].labels  # Read from a dataset too.
    elif not arrays.is_dataset(callback.heldout):
        labels = callback.heldout[1]
    if labels is not None:
        arrays.check_heldout_labels(labels)
    first = next(e for e in itertools.count(1) if callback.estimates_at(e))
    epochs = (callback.params or {}).get("epochs")
    warmup, super_epoch = callback.warmup_epochs, callback.super_epoch
    messages.check_schedule(epochs, first, warmup, super_epoch)
