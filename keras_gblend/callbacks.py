"""`GBlendCallback`: online Gradient-Blending inside `model.fit`."""

from __future__ import annotations

import json
import math
import os
import warnings

import keras
import numpy as np

from keras_gblend import blending, io_utils, measure

MODES = ("in_situ", "exact")
DEFAULT_MIN_WEIGHT = 0.05


class GBlendWarning(UserWarning):
    """Warns that a G-Blend estimate is degenerate (a head collapsed, none learns).

    Example:

    >>> import warnings
    >>> warnings.filterwarnings("ignore", category=GBlendWarning)  # silence them
    """


class GBlendCallback(keras.callbacks.Callback):
    """Re-weights a `GBlendModel`'s per-head losses from measured overfitting.

    Online, in-situ G-Blend: after `warmup_epochs`, the callback measures every
    head's loss on a fixed training subset `T'` and on the held-out set `V` (in
    inference mode); every `super_epoch` epochs after that it measures again,
    computes `dG`, `dO` and the blend weights (`keras_gblend.blending`) between the
    two measurements, and assigns the weights to the model's loss-weight variables,
    effective at the next step with no re-trace. Until the first estimate the
    model keeps its initial weights (uniform by default).

    At the end of every epoch it writes, per head `h`, `gblend_weight_h`,
    `gblend_dG_h`, `gblend_dO_h`, `gblend_ogr_h` (NaN before the first estimate),
    and at estimate epochs `gblend_train_loss_h` and `gblend_heldout_loss_h`, into
    `logs`, so `History`, `CSVLogger` and `TensorBoard` record them. Pass this
    callback BEFORE `CSVLogger` in the callbacks list. Every estimate is also kept
    in `self.estimates`.

    Args:
        train_subset: `T'`: `(x, y)` arrays or a batched `tf.data.Dataset`, a fixed
            subset of the training data (see `keras_gblend.data.sample_subset`).
        heldout: `V`: same form; drawn from the training data and never trained on
            (see `keras_gblend.data.holdout_split`).
        warmup_epochs: Epochs before the first reference measurement (>= 0).
        super_epoch: Epochs between two measurements (>= 1).
        min_weight: Smallest weight of any head (see `blending.blend_weights`).
            Default 0.05, not the paper's 0: in in-situ mode a head whose weight
            reaches 0 stops learning, so its held-out loss stops falling and it
            never gets weight again. On AV-Digits (2 seeds) the fused head
            scored 89.3% with 0 and 92.4% with 0.05 (see RESULTS.md).
        smoothing: In `[0, 1)`: the new weights are
            `(1 - smoothing) * estimate + smoothing * previous`. 0 follows the paper.
        overfit_floor: Floor of `|dO|` (see `blending.blend_weights`).
        batch_size: Batch size of the measurements when data are arrays.
        mode: `"in_situ"` (default: measure the main model's own heads; costs two
            small evaluations per super-epoch) or `"exact"` (the paper's
            Algorithm 3: at every super-epoch, copies of each head's sub-model
            start from the current weights, train `exact_epochs` epochs on
            `train_data`, and are measured before and after; about K + 2 times
            the cost of plain training). The main model's weights and optimizer
            are never touched by the copies.
        train_data: `(x, y)` arrays the exact mode's copies train on (the trained
            part of the data, never `heldout`). Required for `mode="exact"`.
        exact_epochs: Epochs each copy trains in exact mode (the paper's n).
        state_path: Optional JSON file where the callback keeps its measurements
            and estimates, written atomically after each one. If the file exists
            when training starts, the callback resumes from it (dropping entries
            later than the epoch training restarts from), so with
            `keras.callbacks.BackupAndRestore` an interrupted run continues with
            the same weights and history. Pass this callback before
            `BackupAndRestore` in the callbacks list.
        verbose: 1 prints one line per estimate; 0 is silent.

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
    >>> cb = GBlendCallback(train_subset=train, heldout=heldout, verbose=0)
    >>> history = model.fit(*train, epochs=3, callbacks=[cb], verbose=0)
    >>> len(cb.estimates)
    3
    >>> round(sum(model.get_blend_weights().values()), 6)
    1.0

    References:
        Wang, Tran, Feiszli. "What Makes Training Multi-Modal Classification
        Networks Hard?" CVPR 2020 (Algorithm 3; this callback measures the main
        model's own heads instead of training copies).
    """

    def __init__(
        self,
        train_subset,
        heldout,
        *,
        warmup_epochs=0,
        super_epoch=1,
        min_weight=DEFAULT_MIN_WEIGHT,
        smoothing=0.0,
        overfit_floor=blending.DEFAULT_OVERFIT_FLOOR,
        batch_size=256,
        mode="in_situ",
        train_data=None,
        exact_epochs=1,
        state_path=None,
        verbose=1,
    ):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"`mode` must be one of {list(MODES)}. Received {mode!r}.")
        if mode == "exact":
            if train_data is None:
                raise ValueError(
                    "`train_data` is required with mode='exact' (the copies train "
                    "on it). Received None."
                )
            train_data = _check_data("train_data", train_data)
            if not isinstance(train_data, tuple):
                raise ValueError(
                    "`train_data` must be (x, y) arrays in exact mode. Received a "
                    "tf.data.Dataset."
                )
            _check_int("exact_epochs", exact_epochs, minimum=1)
        _check_int("warmup_epochs", warmup_epochs, minimum=0)
        _check_int("super_epoch", super_epoch, minimum=1)
        if not 0 <= smoothing < 1:
            raise ValueError(f"`smoothing` must be in [0, 1). Received {smoothing!r}.")
        if not 0 <= min_weight < 1:
            raise ValueError(
                f"`min_weight` must be in [0, 1/num_heads]. Received {min_weight!r}."
            )
        self.train_subset = _check_data("train_subset", train_subset)
        self.heldout = _check_data("heldout", heldout)
        self.warmup_epochs = warmup_epochs
        self.super_epoch = super_epoch
        self.min_weight = min_weight
        self.smoothing = smoothing
        self.overfit_floor = overfit_floor
        self.batch_size = batch_size
        self.mode = mode
        self.train_data = train_data
        self.exact_epochs = exact_epochs
        self.state_path = state_path
        self.verbose = verbose
        self.estimates = []
        self.measurements = []
        self._resumed = False
        self._collapsed = set()

    @property
    def reference(self):
        """The latest in-situ measurement (a dict), or None before the first."""
        return self.measurements[-1] if self.measurements else None

    def on_train_begin(self, logs=None):
        if not hasattr(self.model, "set_blend_weights"):
            raise ValueError(
                "GBlendCallback needs a GBlendModel (see build_gblend_model). "
                f"Received {type(self.model).__name__}."
            )
        self._resumed = False
        self.initial_weights = self.model.get_blend_weights()
        if self.state_path and os.path.exists(self.state_path):
            with open(self.state_path) as handle:
                state = json.load(handle)
            self.measurements = state["measurements"]
            self.estimates = state["estimates"]
            self.initial_weights = state.get("initial_weights", self.initial_weights)
            self._resumed = True
        # Arrays become cached datasets once, not a new adapter per measurement.
        self._measured = tuple(
            measure.prepare(d, self.batch_size)
            for d in (self.train_subset, self.heldout)
        )

    def on_epoch_begin(self, epoch, logs=None):
        if self._resumed:
            if epoch == 0:
                # No backup was restored: the state file belongs to another run.
                self.measurements, self.estimates = [], []
                self.initial_weights = self.model.get_blend_weights()
            else:
                # Drop what was recorded after the checkpoint training restarts from.
                self.measurements = [m for m in self.measurements if m["epoch"] < epoch]
                self.estimates = [e for e in self.estimates if e["epoch"] <= epoch]
            self._resumed = False
        if epoch == 0 and self.mode == "in_situ" and self.warmup_epochs == 0:
            if not self.measurements:
                self._record_measurement(-1, *self._measure())

    def on_epoch_end(self, epoch, logs=None):
        done = epoch + 1
        if self.mode == "exact":
            if done >= self.warmup_epochs and (
                (done - self.warmup_epochs) % self.super_epoch == 0
            ):
                self._estimate_exact(epoch)
                self._save_state()
        elif done >= self.warmup_epochs and (
            self.reference is None
            or epoch - self.reference["epoch"] >= self.super_epoch
        ):
            train_loss, heldout_loss = self._measure()
            if self.reference is not None:
                self._estimate(epoch, train_loss, heldout_loss)
            self._record_measurement(epoch, train_loss, heldout_loss)
            if logs is not None:
                for h, t, v in zip(self.model.head_names, train_loss, heldout_loss):
                    logs[f"gblend_train_loss_{h}"] = float(t)
                    logs[f"gblend_heldout_loss_{h}"] = float(v)
        if logs is not None:
            # Every key on every epoch: CSVLogger fixes its columns at epoch 1.
            for h in self.model.head_names:
                logs.setdefault(f"gblend_train_loss_{h}", math.nan)
                logs.setdefault(f"gblend_heldout_loss_{h}", math.nan)
            logs.update(self._log_values())

    def _record_measurement(self, epoch, train_loss, heldout_loss):
        self.measurements.append(
            {
                "epoch": epoch,
                "train": [float(v) for v in train_loss],
                "heldout": [float(v) for v in heldout_loss],
            }
        )
        self._save_state()

    def _save_state(self):
        if self.state_path:
            io_utils.atomic_write_json(
                self.state_path,
                {
                    "version": 1,
                    "head_names": list(self.model.head_names),
                    "initial_weights": self.initial_weights,
                    "measurements": self.measurements,
                    "estimates": self.estimates,
                },
            )

    def _measure(self):
        return tuple(
            measure.head_losses(self.model, d, batch_size=self.batch_size)
            for d in self._measured
        )

    def _estimate_exact(self, epoch):
        from keras_gblend import estimation

        lr = self.model.optimizer.learning_rate
        losses = estimation.measure_heads_by_training(
            self.model,
            self.train_data,
            self.train_subset,
            self.heldout,
            epochs=self.exact_epochs,
            batch_size=self.batch_size,
            learning_rate=float(keras.ops.convert_to_numpy(lr)),
        )
        self._estimate(
            epoch,
            losses["train_after"],
            losses["heldout_after"],
            reference=(losses["train_before"], losses["heldout_before"]),
        )

    def _estimate(self, epoch, train_loss, heldout_loss, reference=None):
        heads = self.model.head_names
        previous = np.array([self.model.get_blend_weights()[h] for h in heads])
        if reference is None:
            reference = (self.reference["train"], self.reference["heldout"])
        train_before, heldout_before = reference
        estimate = blending.blend_from_losses(
            train_before,
            heldout_before,
            train_loss,
            heldout_loss,
            min_weight=self.min_weight,
            overfit_floor=self.overfit_floor,
            fallback=previous,
        )
        weights = (1 - self.smoothing) * estimate.weights + self.smoothing * previous
        self.model.set_blend_weights(weights)
        record = {
            "epoch": epoch + 1,
            "status": estimate.status,
            **{
                f"{key}_{h}": float(value)
                for key, values in (
                    ("weight", weights),
                    ("dG", estimate.d_g),
                    ("dO", estimate.d_o),
                    ("ogr", estimate.ogr),
                    ("train_loss", train_loss),
                    ("heldout_loss", heldout_loss),
                )
                for h, value in zip(heads, values)
            },
        }
        self.estimates.append(record)
        self._warn(estimate, weights, epoch)
        if self.verbose:
            parts = ", ".join(
                f"{h} {w:.3f} (dG {g:+.4f}, dO {o:+.4f})"
                for h, w, g, o in zip(heads, weights, estimate.d_g, estimate.d_o)
            )
            # After Keras's progress bar (verbose=1) the line needs a fresh start.
            newline = "\n" if self.params.get("verbose") == 1 else ""
            print(f"{newline}G-Blend epoch {epoch + 1}: weights {parts}", flush=True)

    def _warn(self, estimate, weights, epoch):
        heads = self.model.head_names
        if estimate.status == "fallback":
            changes = ", ".join(f"{h} dG={g:+.4g}" for h, g in zip(heads, estimate.d_g))
            warnings.warn(
                f"G-Blend at epoch {epoch + 1}: no head generalised ({changes}); "
                "kept the previous weights. Training may have started to overfit "
                "everywhere, or V is too small to measure a change.",
                GBlendWarning,
                stacklevel=2,
            )
            return
        at_minimum = {
            h: (w, g, o)
            for h, w, g, o in zip(heads, weights, estimate.d_g, estimate.d_o)
            if w <= self.min_weight + 1e-12
        }
        # Warn when a head reaches the minimum, not at every estimate it stays there.
        new = {h: v for h, v in at_minimum.items() if h not in self._collapsed}
        self._collapsed = set(at_minimum)
        if new:
            details = ", ".join(
                f"{h} (weight {w:.4f}, dG={g:+.4g}, dO={o:+.4g})"
                for h, (w, g, o) in new.items()
            )
            warnings.warn(
                f"G-Blend at epoch {epoch + 1}: weight collapsed to the minimum "
                f"{self.min_weight} for {details}. It overfits faster than it "
                "generalises (dG <= 0 or large dO).",
                GBlendWarning,
                stacklevel=2,
            )

    def _log_values(self):
        last = self.estimates[-1] if self.estimates else {}
        values = {}
        for h, w in self.model.get_blend_weights().items():
            values[f"gblend_weight_{h}"] = w
            for key in ("dG", "dO", "ogr"):
                values[f"gblend_{key}_{h}"] = last.get(f"{key}_{h}", math.nan)
        return values


def _check_int(name, value, minimum):
    if not (isinstance(value, (int, np.integer)) and value >= minimum):
        raise ValueError(f"`{name}` must be an int >= {minimum}. Received {value!r}.")


def _check_data(name, data):
    from keras_gblend.data import arrays

    if arrays.is_dataset(data):
        return data
    return arrays.check_pair(name, data)
