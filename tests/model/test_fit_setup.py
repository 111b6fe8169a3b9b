"""Tests of what `GBlendModel.fit` does to its callbacks (`model.fit_setup`).

The G-Blend callback is recognised by its marker, not by its class: these tests
use stand-ins, and `fit` with the real callback is tested in
tests/training/test_logs.py.
"""

import warnings

import keras
import pytest

from keras_gblend.blend import state
from keras_gblend.model import fit_setup


class _Marked(keras.callbacks.Callback):
    runs_first = True
    train_subset = heldout = None

    def __init__(self, first_estimate=1):
        super().__init__()
        self.first_estimate = first_estimate

    def estimates_at(self, epoch):
        return epoch >= self.first_estimate


def test_the_marked_callback_goes_first_and_gets_the_progress_bar():
    others = [keras.callbacks.History(), keras.callbacks.TerminateOnNaN()]
    blend = _Marked()
    order = fit_setup.prepare_callbacks(others + [blend], verbose=1, x=None)
    assert order[0] is blend and order[1:3] == others
    assert type(order[3]) is fit_setup.ProgbarLogger
    # Silent, or with a progress bar of the user's: nothing added.
    assert fit_setup.prepare_callbacks([blend], verbose=0, x=None) == [blend]
    bar = keras.callbacks.ProgbarLogger()
    assert fit_setup.prepare_callbacks([bar, blend], verbose=1, x=None) == [blend, bar]


def test_callbacks_without_the_marker_are_left_as_they_are():
    class Unmarked(_Marked):
        runs_first = False

    callbacks = [keras.callbacks.History(), Unmarked()]
    assert fit_setup.prepare_callbacks(callbacks, verbose=1, x=None) == callbacks
    listed = keras.callbacks.CallbackList([_Marked()])
    assert fit_setup.prepare_callbacks(listed, verbose=1, x=None) is listed


def test_two_marked_callbacks_are_refused():
    with pytest.raises(ValueError, match="expected one GBlendCallback.*Received 2"):
        fit_setup.prepare_callbacks([_Marked(), _Marked()], verbose=0, x=None)


def test_keras_csv_logger_warns_only_when_estimate_keys_come_late(tmp_path):
    logger = keras.callbacks.CSVLogger(str(tmp_path / "log.csv"))
    with pytest.warns(UserWarning, match="keras_gblend.training.logs.CSVLogger"):
        fit_setup.prepare_callbacks([logger, _Marked(2)], verbose=0, x=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit_setup.prepare_callbacks([logger, _Marked(1)], verbose=0, x=None)


def test_progress_bar_hides_every_log_key_but_the_weights_in_force():
    heads = ("a", "fused")
    measured = state.Measurement(1, [1.0, 2.0], [1.5, 2.5])
    estimated = state.Estimate(1, "ok", [0.25, 0.75], [1, 1], [1, 1], [1, 1])
    logs = state.BlendState(heads, (0.5, 0.5)).add(measured).add(estimated).logs_at(1)
    assert len(logs) == 2 * len(state.LOG_KEYS)  # Every quantity is logged here.
    shown = fit_setup._shown({"loss": 1.0, **logs})
    assert shown == {"loss": 1.0, "gblend_weight_a": 0.25, "gblend_weight_fused": 0.75}
