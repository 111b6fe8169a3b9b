"""Tests of GBlendCallback: schedule, logged values, math wiring, resume, errors."""

import csv
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_gblend import GBlendCallback, blending
from tests.helpers import synthetic_setup

HEADS = ("a", "b", "fused")


def _setup(num_train=96, seed=0):
    return synthetic_setup(num_train, seed)


def _fit(model, train, callbacks, epochs):
    return model.fit(
        *train, epochs=epochs, batch_size=16, callbacks=callbacks, verbose=0
    )


@pytest.mark.filterwarnings("ignore:G-Blend at epoch")
def test_schedule_warmup_and_super_epoch():
    model, train, heldout = _setup()
    cb = GBlendCallback(train, heldout, warmup_epochs=1, super_epoch=2, verbose=0)
    _fit(model, train, [cb], epochs=6)
    # Reference after epoch 1, then every 2 epochs: estimates after 3 and 5.
    assert [m["epoch"] for m in cb.measurements] == [0, 2, 4]
    assert [e["epoch"] for e in cb.estimates] == [3, 5]


@pytest.mark.filterwarnings("ignore:G-Blend at epoch")
def test_weights_are_the_blend_of_measured_losses():
    model, train, heldout = _setup()
    cb = GBlendCallback(train, heldout, min_weight=0.05, verbose=0)
    _fit(model, train, [cb], epochs=2)
    before, after = cb.measurements[-2], cb.measurements[-1]
    expected = blending.blend_from_losses(
        before["train"],
        before["heldout"],
        after["train"],
        after["heldout"],
        min_weight=0.05,
    )
    got = model.get_blend_weights()
    np.testing.assert_allclose([got[h] for h in HEADS], expected.weights, rtol=1e-6)
    record = cb.estimates[-1]
    np.testing.assert_allclose([record[f"dG_{h}"] for h in HEADS], expected.d_g)
    np.testing.assert_allclose([record[f"dO_{h}"] for h in HEADS], expected.d_o)


@pytest.mark.filterwarnings("ignore:G-Blend at epoch")
def test_measured_losses_are_inference_mode_head_losses():
    model, train, heldout = _setup()
    cb = GBlendCallback(train, heldout, verbose=0)
    _fit(model, train, [cb], epochs=1)
    probs = model.predict(heldout[0], verbose=0)
    y = heldout[1]
    expected = [-np.mean(np.log(probs[h][np.arange(len(y)), y])) for h in HEADS]
    np.testing.assert_allclose(cb.measurements[-1]["heldout"], expected, rtol=1e-4)


@pytest.mark.filterwarnings("ignore:G-Blend at epoch")
def test_logs_reach_history_and_csv_logger(tmp_path):
    model, train, heldout = _setup()
    cb = GBlendCallback(train, heldout, warmup_epochs=1, verbose=0)
    path = os.path.join(tmp_path, "log.csv")
    history = _fit(model, train, [cb, keras.callbacks.CSVLogger(path)], epochs=3)
    for key in ("weight", "dG", "dO", "ogr"):
        for head in HEADS:
            assert len(history.history[f"gblend_{key}_{head}"]) == 3
    # Before the first estimate the deltas are NaN; then they are the estimates.
    assert np.isnan(history.history["gblend_dG_a"][0])
    assert history.history["gblend_dG_a"][2] == pytest.approx(cb.estimates[-1]["dG_a"])
    with open(path) as handle:
        rows = list(csv.DictReader(handle))
    assert float(rows[2]["gblend_weight_fused"]) == pytest.approx(
        model.get_blend_weights()["fused"]
    )


@pytest.mark.filterwarnings("ignore:G-Blend at epoch")
def test_accepts_tf_data_datasets():
    model, train, heldout = _setup()
    to_ds = lambda pair: tf.data.Dataset.from_tensor_slices(pair).batch(32)  # noqa: E731
    cb = GBlendCallback(to_ds(train), to_ds(heldout), verbose=0)
    _fit(model, train, [cb], epochs=2)
    assert len(cb.estimates) == 2


@pytest.mark.filterwarnings("ignore:G-Blend at epoch")
def test_state_file_resumes_and_drops_entries_after_restart(tmp_path):
    path = os.path.join(tmp_path, "state.json")
    model, train, heldout = _setup()
    cb = GBlendCallback(train, heldout, state_path=path, verbose=0)
    _fit(model, train, [cb], epochs=4)
    with open(path) as handle:
        state = json.load(handle)
    assert [m["epoch"] for m in state["measurements"]] == [-1, 0, 1, 2, 3]
    assert [e["epoch"] for e in state["estimates"]] == [1, 2, 3, 4]
    # A restarted run that resumes after epoch 2 keeps what came before it.
    resumed = GBlendCallback(train, heldout, state_path=path, verbose=0)
    model.fit(*train, epochs=3, initial_epoch=2, callbacks=[resumed], verbose=0)
    assert [m["epoch"] for m in resumed.measurements] == [-1, 0, 1, 2]
    assert [e["epoch"] for e in resumed.estimates] == [1, 2, 3]
    assert resumed.estimates[:2] == state["estimates"][:2]


@pytest.mark.filterwarnings("ignore:G-Blend at epoch")
def test_exact_mode_trains_copies_and_leaves_main_model_alone():
    model, train, heldout = _setup()
    cb = GBlendCallback(
        train, heldout, mode="exact", train_data=train, exact_epochs=1, verbose=0
    )
    seen = []
    spy = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: seen.append(
            int(keras.ops.convert_to_numpy(model.optimizer.iterations))
        )
    )
    _fit(model, train, [cb, spy], epochs=2)
    assert [e["epoch"] for e in cb.estimates] == [1, 2]
    # 72 examples, batch 16 -> 5 steps per epoch: copies did not step this optimizer.
    assert seen == [5, 10]
    weights = model.get_blend_weights()
    assert sum(weights.values()) == pytest.approx(1.0)


@pytest.mark.filterwarnings("ignore:G-Blend at epoch")
def test_prints_one_line_per_estimate(capsys):
    model, train, heldout = _setup()
    cb = GBlendCallback(train, heldout, min_weight=0.01, verbose=1)
    _fit(model, train, [cb], epochs=2)
    lines = [line for line in capsys.readouterr().out.splitlines() if "G-Blend" in line]
    assert len(lines) == 2
    assert lines[0].startswith("G-Blend epoch 1: weights a ")


def test_warns_when_no_head_generalises():
    model, train, heldout = _setup()
    cb = GBlendCallback(train, heldout, verbose=0)
    cb.set_model(model)
    cb.measurements = [{"epoch": 0, "train": [1.0] * 3, "heldout": [1.0] * 3}]
    with pytest.warns(UserWarning, match=r"no head generalised \(a dG=-0\.5"):
        cb._estimate(1, np.array([0.5] * 3), np.array([1.5] * 3))
    assert cb.estimates[-1]["status"] == "fallback"


def test_warns_when_a_head_collapses():
    model, train, heldout = _setup()
    cb = GBlendCallback(train, heldout, min_weight=0.0, verbose=0)
    cb.set_model(model)
    cb.measurements = [{"epoch": 0, "train": [1.0] * 3, "heldout": [1.0] * 3}]
    with pytest.warns(
        UserWarning, match=r"collapsed to the minimum 0.0 for b \(weight 0\.0000"
    ):
        cb._estimate(1, np.array([0.5, 0.5, 0.5]), np.array([0.8, 1.2, 0.9]))


def test_requires_a_gblend_model():
    plain = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    plain.compile(loss="mse")
    _, train, heldout = _setup()
    cb = GBlendCallback(train, heldout, verbose=0)
    with pytest.raises(ValueError, match="needs a GBlendModel.*Received Sequential"):
        plain.fit(np.zeros((4, 2)), np.zeros((4, 2)), callbacks=[cb], verbose=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(warmup_epochs=-1), "`warmup_epochs` must be an int >= 0"),
        (dict(super_epoch=0), "`super_epoch` must be an int >= 1"),
        (dict(smoothing=1.0), r"`smoothing` must be in \[0, 1\)"),
        (dict(mode="fast"), "`mode` must be one of"),
        (dict(mode="exact"), "`train_data` is required with mode='exact'"),
        (dict(min_weight=2.0), "`min_weight` must be in"),
    ],
)
def test_bad_arguments(kwargs, match):
    _, train, heldout = _setup()
    with pytest.raises(ValueError, match=match):
        GBlendCallback(train, heldout, **kwargs)


def test_empty_heldout_set():
    _, train, heldout = _setup()
    x, y = heldout
    empty = ({k: v[:0] for k, v in x.items()}, y[:0])
    with pytest.raises(ValueError, match="`heldout` is empty"):
        GBlendCallback(train, empty)


def test_collapse_warning_once_per_collapse():
    model, train, heldout = _setup()
    cb = GBlendCallback(train, heldout, min_weight=0.0, verbose=0)
    cb.set_model(model)
    cb.measurements = [{"epoch": 0, "train": [1.0] * 3, "heldout": [1.0] * 3}]
    after = (np.array([0.5, 0.5, 0.5]), np.array([0.8, 1.2, 0.9]))
    with pytest.warns(UserWarning, match="collapsed"):
        cb._estimate(1, *after)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cb._estimate(2, *after)  # still collapsed: no second warning
