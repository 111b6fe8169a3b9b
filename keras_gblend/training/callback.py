"""`GBlendCallback`: online Gradient-Blending inside `model.fit`."""

from __future__ import annotations

import itertools
import math
import os

import keras
import numpy as np

from keras_gblend.blend import (
    estimators,
    formula,
    head_copies,
    measure,
    state,
    state_file,
)
from keras_gblend.common import messages
from keras_gblend.common.messages import AdaptiveOptimizerWarning, GBlendWarning
from keras_gblend.model import prediction

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

    Every `super_epoch` epochs after `warmup_epochs`, the callback measures
    (a measurer of `keras_gblend.blend.measure`, chosen by `mode`: every head's
    loss on `T'` and `V`, in inference mode), estimates blend weights
    (`keras_gblend.blend.estimators`), and assigns them, scaled
    (`formula.scale_weights`), to the model's loss-weight variables (effective
    at the next step, no re-trace). The record lives in `self.state`
    (`keras_gblend.blend.state.BlendState`; epochs counted as epochs completed)
    and, with `state_path`, in a file.

    Logs (`keras_gblend.blend.state.LOG_KEYS`, for `History`, `CSVLogger`,
    `TensorBoard`; `GBlendModel.fit` runs this callback before the others, see
    `runs_first`): `gblend_weight_<head>` every epoch (the
    weights in force, summing to 1); `gblend_dG_<head>`, `gblend_dO_<head>`,
    `gblend_ogr_<head>` at estimate epochs and `gblend_train_loss_<head>`,
    `gblend_heldout_loss_<head>` at measurement epochs only, never a NaN
    placeholder (like Keras's `val_*` keys with `validation_freq`). Keras's
    `CSVLogger` fixes its columns at its first epoch and drops keys that appear
    later; `keras_gblend.training.logs.CSVLogger` adds them. The progress bar
    shows the weights; the estimate's values are in the callback's own line,
    printed (with any warning) after Keras's progress bar line.

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
            (`estimator="fused_floor"`), weights scaled so that the largest is 1
            (`weight_scale="max_one"`), and the output mode chosen on `V` when
            training ends.
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

    # The marker by which `GBlendModel.fit` finds this callback and runs it
    # before the others (`keras_gblend.model.fit_setup`, in the layer below,
    # does not import this class).
    runs_first = True

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
        messages.check_one_of("preset", preset, PRESETS)
        given = dict(estimator=estimator, weight_scale=weight_scale, output=output)
        given = {k: v for k, v in given.items() if v is not None}
        settings = {"preset": preset, **PRESETS[preset], **given}
        messages.check_one_of("mode", mode, MODES)
        messages.check_one_of("output", settings["output"], OUTPUTS)
        scale = settings["weight_scale"]
        messages.check_one_of("weight_scale", scale, formula.WEIGHT_SCALES)
        messages.check_int("warmup_epochs", warmup_epochs, 0)
        messages.check_int("super_epoch", super_epoch, 1)
        messages.check_int("exact_epochs", exact_epochs, 1)
        messages.check_argument("smoothing", smoothing, 0 <= smoothing < 1, "in [0, 1)")
        messages.check_min_weight(min_weight)
        sets = (train_subset, heldout)
        if mode == "exact":  # The one mode branch: what measures.
            messages.check_argument(
                "train_data",
                train_data,
                train_data is not None,
                "given with mode='exact' (the copies train on it)",
            )
            self._measurer = head_copies.HeadCopies(
                train_data, *sets, epochs=exact_epochs, batch_size=batch_size
            )
        else:
            self._measurer = measure.InSituMeasurer(*sets, batch_size=batch_size)
        self.train_subset = self._measurer.train_subset
        self.heldout = self._measurer.heldout
        self.estimator = estimators.get(settings["estimator"])
        if not isinstance(settings["estimator"], str):
            settings["estimator"] = repr(settings["estimator"])
        self.preset, self.output, self.settings = preset, settings["output"], settings
        self.warmup_epochs, self.super_epoch = warmup_epochs, super_epoch
        self.min_weight, self.smoothing = min_weight, smoothing
        self.weight_scale, self.overfit_floor = scale, overfit_floor
        self.batch_size, self.mode, self.train_data = batch_size, mode, train_data
        self.exact_epochs, self.state_path = exact_epochs, state_path
        self.verbose = verbose
        self.state, self._pending = None, []
        self._started = self._diverged = False

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
        messages.check_min_weight(self.min_weight, len(model.head_names))
        messages.check_optimizer(model.optimizer)
        self._measurer.setup(model)
        first = next(e for e in itertools.count(1) if self.estimates_at(e))
        epochs = (self.params or {}).get("epochs")
        messages.check_schedule(epochs, first, self.warmup_epochs, self.super_epoch)
        exists = self.state_path and os.path.exists(self.state_path)
        self.state = state_file.load(self.state_path) if exists else None
        self._started = self._diverged = False

    def on_epoch_begin(self, epoch, logs=None):
        self._flush()
        if self._started:
            return
        self._started = True
        heads = self.model.head_names
        if self.state is not None and epoch > 0:  # Resumed: drop what came later.
            self.state = self.state.resume(heads, epoch, path=self.state_path)
            return
        weights = np.array(list(self.model.get_blend_weights().values()))
        weights = weights / weights.sum()
        if self.weight_scale != "sum_to_one":  # The paper's: the model's as they are.
            self._assign(weights)
        self.state = state.BlendState(heads, weights, settings=self.settings)
        if epoch == 0 and self._measurer.recorded and self.warmup_epochs == 0:
            self._measure(0)  # The reference, before training.
        self._save()

    def on_epoch_end(self, epoch, logs=None):
        logs = {} if logs is None else logs
        if not math.isfinite(logs.get("loss", 0.0)):
            self.model.stop_training = self._diverged = True
            return self._pending.append(messages.diverged(logs["loss"], epoch + 1))
        since = epoch + 1 - self.warmup_epochs
        if since >= 0 and since % self.super_epoch == 0:
            self._measure(epoch + 1)
        logs.update(self.state.logs_at(epoch + 1))

    def on_train_end(self, logs=None):
        if self.output == "auto" and self.state is not None and not self._diverged:
            choice = self._select_output_mode()
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
        first = 1 if self._measurer.recorded else 0  # In situ: a reference first.
        return since >= first and since % self.super_epoch == 0

    def _measure(self, epoch):
        """Measures; records what the measurer says to; estimates from two on."""
        measurements = self._measurer.measurements(self.model, epoch)
        if self._measurer.recorded:
            for measurement in measurements:
                self._record(measurement)
            measurements = self.state.measurements
        if len(measurements) > 1:
            self._estimate(epoch, measurements)

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
            self._assign(weights)
        before = self.state.estimates[-1] if self.state.estimates else None
        record = state.Estimate(
            epoch, estimate.status, weights, estimate.d_g, estimate.d_o, estimate.ogr
        )
        self._record(record)
        said = messages.estimate_messages(
            self.model.head_names, record, before, self.min_weight
        )
        self._pending += said if self.verbose else said[:-1]

    def _select_output_mode(self):
        """`GBlendModel.select_output_mode` on `V`, as prepared by the measurer.

        The same choice (`prediction.choose_mode`, then `set_output_mode`), from
        the heads' probabilities the measurer computes with the function it
        measures with (in situ): no new traced prediction at the end of a run.
        """
        probs, labels = self._measurer.heldout_probabilities(self.model)
        model = self.model
        choice = prediction.choose_mode(probs, labels, fused=model.head_names[-1])
        model.set_output_mode(choice.mode, choice.weights)
        return choice

    def _assign(self, weights):
        """The one place weights reach the model: blend weights, scaled."""
        self.model.set_blend_weights(formula.scale_weights(weights, self.weight_scale))

    def _record(self, record):
        self.state = self.state.add(record)
        self._save()

    def _flush(self):
        """Says what the last epoch had to say, after Keras's bar line."""
        pending, self._pending = self._pending, []
        messages.emit(pending)

    def _save(self):
        if self.state_path:
            state_file.save(self.state_path, self.state)
