"""What G-Blend shows and checks during `fit`: logs, progress bar, data mistakes."""

import csv
import os
import re
import warnings

import keras
import numpy as np
import pytest

from keras_gblend import GBlendCallback, GBlendWarning, data
from keras_gblend.data import arrays
from keras_gblend.model import objective
from keras_gblend.report.history import read_history
from keras_gblend.training import logs
from tests.helpers import synthetic_setup

EVERY_EPOCH = dict(warmup_epochs=0, super_epoch=1)


def _fit(model, train, callbacks, epochs=1, **kwargs):
    kwargs.setdefault("verbose", 0)
    return model.fit(
        *train, epochs=epochs, batch_size=16, callbacks=callbacks, **kwargs
    )


def _read(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.filterwarnings("ignore::keras_gblend.GBlendWarning")
def test_progress_bar_hides_estimate_diagnostics_that_history_keeps(capsys):
    model, train, heldout = synthetic_setup()
    cb = GBlendCallback(train, heldout, verbose=0, **EVERY_EPOCH)
    history = _fit(model, train, [cb], epochs=2, verbose=2)
    out = capsys.readouterr().out
    epoch_lines = [line for line in out.splitlines() if "loss:" in line]
    assert len(epoch_lines) == 2  # One line per epoch: nothing wraps into more.
    for line in epoch_lines:
        shown = re.findall(r"(\w+): ", line)
        assert [k for k in shown if k.startswith("gblend_")] == [
            "gblend_weight_a",
            "gblend_weight_b",
            "gblend_weight_fused",
        ]
    assert "nan" not in out
    # History (like CSV loggers and TensorBoard) still gets every key.
    for key in ("dG", "dO", "ogr", "train_loss", "heldout_loss"):
        assert len(history.history[f"gblend_{key}_a"]) == 2


@pytest.mark.filterwarnings("ignore::keras_gblend.GBlendWarning")
def test_a_progress_bar_the_user_passes_is_kept(capsys):
    model, train, heldout = synthetic_setup()
    cb = GBlendCallback(train, heldout, verbose=0, **EVERY_EPOCH)
    _fit(model, train, [cb, keras.callbacks.ProgbarLogger()], epochs=1, verbose=2)
    assert "gblend_dG_a" in capsys.readouterr().out


@pytest.mark.filterwarnings("ignore::keras_gblend.GBlendWarning")
def test_csv_logger_adds_columns_as_keys_appear_and_resumes(tmp_path):
    model, train, heldout = synthetic_setup()
    state_path = os.path.join(tmp_path, "state.json")
    cb = GBlendCallback(
        train, heldout, warmup_epochs=1, super_epoch=2, state_path=state_path, verbose=0
    )
    path = os.path.join(tmp_path, "log.csv")
    _fit(model, train, [cb, logs.CSVLogger(path)], epochs=3)
    rows = _read(path)
    assert [r["epoch"] for r in rows] == ["0", "1", "2"]
    # Estimated after epoch 3 only; measured after epochs 1 and 3.
    assert [r["gblend_dG_b"] for r in rows][:2] == ["", ""]
    assert float(rows[2]["gblend_dG_b"]) == pytest.approx(cb.estimates[0].d_g[1])
    assert [r["gblend_train_loss_a"] != "" for r in rows] == [True, False, True]
    assert float(rows[2]["gblend_weight_fused"]) == pytest.approx(
        cb.estimates[0].weights[2]
    )
    assert all("nan" not in v.lower() for r in rows for v in r.values())
    epochs, d_g = read_history(path).series("dG", "b")  # The plot tool reads it.
    assert list(epochs) == [3] and d_g[0] == pytest.approx(cb.estimates[0].d_g[1])
    # A resumed run continues the file, replacing rows from its first epoch on.
    _fit(model, train, [cb, logs.CSVLogger(path, append=True)], 4, initial_epoch=2)
    resumed = _read(path)
    assert [r["epoch"] for r in resumed] == ["0", "1", "2", "3"]
    assert resumed[:2] == rows[:2]
    assert float(resumed[2]["gblend_dG_b"]) == pytest.approx(cb.estimates[-1].d_g[1])
    assert resumed[3]["gblend_dG_b"] == ""


def test_csv_logger_refuses_a_bad_separator():
    with pytest.raises(ValueError, match="`separator` must be one character"):
        logs.CSVLogger("x.csv", separator=";;")


def test_keras_csv_logger_that_would_drop_estimate_keys_warns(tmp_path):
    model, train, heldout = synthetic_setup()
    # First estimate after epoch 2 (reference after epoch 1): not in the header.
    cb = GBlendCallback(train, heldout, warmup_epochs=1, super_epoch=1, verbose=0)
    path = os.path.join(tmp_path, "log.csv")
    with pytest.warns(GBlendWarning, match="keras_gblend.training.logs.CSVLogger"):
        _fit(model, train, [keras.callbacks.CSVLogger(path), cb], epochs=2)
    # Estimating after epoch 1 puts every key in its header: no warning.
    model, train, heldout = synthetic_setup()
    cb = GBlendCallback(train, heldout, verbose=0, **EVERY_EPOCH)
    with _ErrorOn(GBlendWarning):
        _fit(model, train, [keras.callbacks.CSVLogger(path), cb])
    assert "gblend_dG_a" in _read(path)[0]


class _ErrorOn:
    def __init__(self, category):
        self.category = category

    def __enter__(self):
        self._manager = warnings.catch_warnings()
        self._manager.__enter__()
        warnings.simplefilter("error", self.category)

    def __exit__(self, *exc):
        return self._manager.__exit__(*exc)


class _Probe(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seen = []

    def on_epoch_end(self, epoch, logs=None):
        self.seen.append(sorted(logs))


def test_gblend_callback_runs_before_the_others():
    model, train, heldout = synthetic_setup()
    probe = _Probe()
    cb = GBlendCallback(train, heldout, verbose=0, **EVERY_EPOCH)
    _fit(model, train, [probe, cb])  # Listed after the probe, run before it.
    assert "gblend_dG_a" in probe.seen[0]
    assert "gblend_weight_a" in probe.seen[0]


def _fails_before_training(model, train, callbacks, match):
    with pytest.warns(GBlendWarning, match=match):
        with pytest.raises(_Stop):
            # Epochs enough for an estimate (else fit warns that none is made).
            _fit(model, train, callbacks + [_StopAtFirstBatch()], epochs=5)
    assert int(model.optimizer.iterations.numpy()) == 0


class _Stop(Exception):
    pass


class _StopAtFirstBatch(keras.callbacks.Callback):
    def on_train_batch_begin(self, batch, logs=None):
        raise _Stop


class _StopAtFirstEpochEnd(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        self.model.stop_training = True


def test_swapped_subset_and_heldout_warn_before_training():
    model, train, heldout = synthetic_setup()
    subset = data.sample_subset(train, 24)
    cb = GBlendCallback(heldout, subset, verbose=0)  # Swapped.
    _fails_before_training(model, train, [cb], r"Are they swapped\?")


def test_heldout_inside_the_training_data_warns_before_training():
    model, train, heldout = synthetic_setup()
    everything = (
        {m: np.concatenate([train[0][m], heldout[0][m]]) for m in train[0]},
        np.concatenate([train[1], heldout[1]]),
    )
    cb = GBlendCallback(data.sample_subset(train, 24), heldout, verbose=0)
    _fails_before_training(
        model, everything, [cb], r"`heldout` \(V\) shares (\d+) of its \1 examples"
    )


def test_correct_split_raises_no_data_warning():
    model, train, heldout = synthetic_setup()
    cb = GBlendCallback(data.sample_subset(train, 24), heldout, verbose=0)
    with _ErrorOn(GBlendWarning):
        _fit(model, train, [cb, _StopAtFirstEpochEnd()], epochs=5)
    assert np.isfinite(model.get_blend_weights()["fused"])


def test_validation_split_slice_overlapping_t_prime_warns_before_training():
    # Issue 20, item 6: Keras validates on the last part of `x` and never
    # trains on it; a T' sampled from the whole of `x` overlaps it.
    model, train, heldout = synthetic_setup()
    n = len(train[1])
    split = int(np.floor(n * 0.75))  # Keras: floor(n * (1 - validation_split)).
    subset = arrays.take(train, list(range(12)) + list(range(n - 8, n)))
    cb = GBlendCallback(subset, heldout, verbose=0)
    match = (
        rf"`validation_split=0.25` holds out the last {n - split} of the {n} "
        rf"examples of `x` .* shares 8 of its 20 examples with that slice"
    )
    with pytest.warns(GBlendWarning, match=match):
        with pytest.raises(_Stop):
            _fit(model, train, [cb, _StopAtFirstBatch()], 5, validation_split=0.25)
    assert int(model.optimizer.iterations.numpy()) == 0
    # T' from the part Keras trains on: no warning.
    model, train, heldout = synthetic_setup()
    cb = GBlendCallback(arrays.take(train, range(20)), heldout, verbose=0)
    with _ErrorOn(GBlendWarning):
        with pytest.raises(_Stop):
            _fit(model, train, [cb, _StopAtFirstBatch()], 5, validation_split=0.25)


def test_monitor_warning_only_for_the_blended_loss():
    # Issue 20, item 1: the key to monitor does not warn; `loss` does.
    keep = [
        keras.callbacks.EarlyStopping(monitor="mean_head_loss"),
        keras.callbacks.ReduceLROnPlateau(monitor="val_mean_head_loss"),
        keras.callbacks.ModelCheckpoint("m.keras", monitor="loss"),  # Not "best".
    ]
    with _ErrorOn(GBlendWarning):
        objective.check_monitors(keep)
    with pytest.warns(GBlendWarning, match=r"ModelCheckpoint\(monitor='val_loss'\)"):
        objective.check_monitors(
            [keras.callbacks.ModelCheckpoint("m.keras", save_best_only=True)]
        )
