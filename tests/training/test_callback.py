"""Tests of GBlendCallback: schedule, math wiring, logs, resume, every user mistake."""

import csv
import json
import math
import os
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_gblend import GBlendCallback, GBlendWarning
from keras_gblend.blend import formula, measure, state, state_file
from keras_gblend.blend.state import Measurement
from keras_gblend.training.callback import AdaptiveOptimizerWarning
from tests.helpers import synthetic_setup

HEADS = ("a", "b", "fused")
# The paper's configuration, whose numbers these tests check in closed form (the
# default preset's floor, scale and output choice: tests/training/test_defaults.py).
EVERY_EPOCH = dict(warmup_epochs=0, super_epoch=1, preset="paper")


def _fit(model, train, callbacks, epochs, **kwargs):
    return model.fit(
        *train, epochs=epochs, batch_size=16, callbacks=callbacks, verbose=0, **kwargs
    )


def _batched(pair, size=32):
    return tf.data.Dataset.from_tensor_slices(pair).batch(size)


def _script(monkeypatch, losses):
    """Replaces the callback's measurements with `losses`, a list of (T', V) rows."""
    calls = [row for pair in losses for row in pair]

    def fake(model, data_, batch_size=256, loss=None):
        mean = np.asarray(calls.pop(0), np.float64)
        return measure.HeadLosses(mean, np.zeros_like(mean), 10)

    monkeypatch.setattr(measure, "head_loss_stats", fake)


@pytest.mark.filterwarnings("ignore::keras_gblend.GBlendWarning")
def test_schedule_counts_completed_epochs():
    model, train, heldout = synthetic_setup()
    cb = GBlendCallback(train, heldout, warmup_epochs=1, super_epoch=2, verbose=0)
    _fit(model, train, [cb], epochs=6)
    # Reference after epoch 1, then every 2 epochs: estimates after 3 and 5.
    assert [m.epoch for m in cb.measurements] == [1, 3, 5]
    assert [e.epoch for e in cb.estimates] == [3, 5]


@pytest.mark.filterwarnings("ignore::keras_gblend.GBlendWarning")
def test_defaults_are_the_recommended_schedule():
    model, train, heldout = synthetic_setup()
    cb = GBlendCallback(train, heldout, verbose=0)
    _fit(model, train, [cb], epochs=5)
    assert [m.epoch for m in cb.measurements] == [2, 5]
    assert [e.epoch for e in cb.estimates] == [5]
    assert cb.min_weight == 0.05


@pytest.mark.filterwarnings("ignore::keras_gblend.GBlendWarning")
def test_weights_are_the_blend_of_measured_losses():
    model, train, heldout = synthetic_setup()
    cb = GBlendCallback(train, heldout, min_weight=0.05, verbose=0, **EVERY_EPOCH)
    _fit(model, train, [cb], epochs=2)
    before, after = cb.measurements[-2], cb.measurements[-1]
    expected = formula.blend_from_losses(
        before.train, before.heldout, after.train, after.heldout, min_weight=0.05
    )
    got = model.get_blend_weights()
    np.testing.assert_allclose([got[h] for h in HEADS], expected.weights, rtol=1e-6)
    np.testing.assert_allclose(cb.estimates[-1].d_g, expected.d_g)
    np.testing.assert_allclose(cb.estimates[-1].d_o, expected.d_o)


@pytest.mark.filterwarnings("ignore::keras_gblend.GBlendWarning")
def test_measured_losses_are_inference_mode_head_losses_with_sems():
    model, train, heldout = synthetic_setup()
    cb = GBlendCallback(train, heldout, verbose=0, **EVERY_EPOCH)
    _fit(model, train, [cb], epochs=1)
    probs = model.predict(heldout[0], verbose=0)
    y = heldout[1]
    per_example = [-np.log(probs[h][np.arange(len(y)), y]) for h in HEADS]
    np.testing.assert_allclose(
        cb.measurements[-1].heldout, [p.mean() for p in per_example], rtol=1e-4
    )
    sems = [p.std(ddof=1) / math.sqrt(len(y)) for p in per_example]
    np.testing.assert_allclose(cb.measurements[-1].heldout_sem, sems, rtol=1e-3)


@pytest.mark.filterwarnings("ignore::keras_gblend.GBlendWarning")
@pytest.mark.filterwarnings("ignore::keras_gblend.GBlendWarning")
def test_logs_hold_no_nan_and_reach_history_and_csv_logger(tmp_path):
    model, train, heldout = synthetic_setup()
    cb = GBlendCallback(
        train, heldout, warmup_epochs=1, super_epoch=2, preset="paper", verbose=0
    )
    path = os.path.join(tmp_path, "log.csv")
    history = _fit(model, train, [cb, keras.callbacks.CSVLogger(path)], epochs=3)
    logged = history.history
    # Weights in force every epoch; the estimate's values only where estimated.
    for head in HEADS:
        assert len(logged[f"gblend_weight_{head}"]) == 3
        assert len(logged[f"gblend_dG_{head}"]) == 1  # One estimate, after epoch 3.
    assert logged["gblend_dG_b"] == [cb.estimates[0].d_g[1]]
    assert len(logged["gblend_train_loss_a"]) == 2  # Measured after epochs 1, 3.
    values = [v for key, vs in logged.items() if "gblend" in key for v in vs]
    assert all(math.isfinite(v) for v in values)
    assert logged["gblend_weight_b"][:2] == pytest.approx([1 / 3, 1 / 3])
    assert logged["gblend_weight_b"][2] == pytest.approx(cb.estimates[0].weights[1])
    with open(path) as handle:
        rows = list(csv.DictReader(handle))
    assert float(rows[2]["gblend_weight_fused"]) == pytest.approx(
        model.get_blend_weights()["fused"]
    )


@pytest.mark.filterwarnings("ignore::keras_gblend.GBlendWarning")
@pytest.mark.parametrize("mode", ["in_situ", "exact"])
def test_accepts_tf_data_datasets_in_both_modes(mode):
    model, train, heldout = synthetic_setup()
    cb = GBlendCallback(
        _batched(train),
        _batched(heldout),
        mode=mode,
        train_data=_batched(train, 16) if mode == "exact" else None,
        verbose=0,
        **EVERY_EPOCH,
    )
    _fit(model, train, [cb], epochs=2)
    assert [e.epoch for e in cb.estimates] == [1, 2]
    assert all(e.status == "ok" for e in cb.estimates)


@pytest.mark.filterwarnings("ignore::keras_gblend.GBlendWarning")
def test_state_file_resumes_and_drops_entries_after_restart(tmp_path):
    path = os.path.join(tmp_path, "state.json")
    model, train, heldout = synthetic_setup()
    cb = GBlendCallback(train, heldout, state_path=path, verbose=0, **EVERY_EPOCH)
    _fit(model, train, [cb], epochs=4)
    with open(path) as handle:
        saved = json.load(handle)
    assert saved["version"] == 2
    assert [m["epoch"] for m in saved["measurements"]] == [0, 1, 2, 3, 4]
    assert [e["epoch"] for e in saved["estimates"]] == [1, 2, 3, 4]
    # A restarted run that resumes after epoch 2 keeps what came before it.
    resumed = GBlendCallback(train, heldout, state_path=path, verbose=0, **EVERY_EPOCH)
    _fit(model, train, [resumed], epochs=3, initial_epoch=2)
    assert [m.epoch for m in resumed.measurements] == [0, 1, 2, 3]
    assert [e.epoch for e in resumed.estimates] == [1, 2, 3]
    assert resumed.estimates[:2] == cb.estimates[:2]
    # A fresh run (initial_epoch 0) with a stale file starts a new record.
    fresh = GBlendCallback(train, heldout, state_path=path, verbose=0, **EVERY_EPOCH)
    _fit(model, train, [fresh], epochs=1)
    assert [m.epoch for m in fresh.measurements] == [0, 1]


def test_resuming_from_another_models_state_is_refused(tmp_path):
    path = os.path.join(tmp_path, "state.json")
    state_file.save(path, state.BlendState(("x", "y", "fused"), (0.2, 0.3, 0.5)))
    model, train, heldout = synthetic_setup()
    cb = GBlendCallback(train, heldout, state_path=path, verbose=0, **EVERY_EPOCH)
    with pytest.raises(
        ValueError, match=r"of this model's heads \['a', 'b', 'fused'\]"
    ):
        _fit(model, train, [cb], epochs=2, initial_epoch=1)


@pytest.mark.filterwarnings("ignore::keras_gblend.GBlendWarning")
def test_exact_mode_builds_copies_once_and_leaves_main_model_alone():
    model, train, heldout = synthetic_setup()
    cb = GBlendCallback(
        train, heldout, mode="exact", train_data=train, verbose=0, **EVERY_EPOCH
    )
    seen = []

    def spy(epoch, logs):
        sub = cb._measurer._subs["a"]
        seen.append((int(model.optimizer.iterations.numpy()), sub.train_function))

    _fit(model, train, [cb, keras.callbacks.LambdaCallback(on_epoch_end=spy)], 3)
    assert [e.epoch for e in cb.estimates] == [1, 2, 3]
    # 72 examples, batch 16 -> 5 steps per epoch: copies did not step this optimizer.
    assert [steps for steps, _ in seen] == [5, 10, 15]
    # One traced train function for the whole run: no rebuild per estimate.
    assert seen[0][1] is seen[1][1] is seen[2][1]


def test_fallback_keeps_the_weights_bit_identical(monkeypatch):
    model, train, heldout = synthetic_setup()
    model.set_blend_weights([0.7, 0.2, 0.1])
    before = model.get_blend_weights()
    _script(monkeypatch, [([1.0] * 3, [1.0] * 3), ([0.9] * 3, [1.1, 1.2, 1.05])])
    cb = GBlendCallback(train, heldout, min_weight=0.1, verbose=0, **EVERY_EPOCH)
    with pytest.warns(GBlendWarning, match=r"no head generalised \(a dG=-0\.1"):
        _fit(model, train, [cb], epochs=1)
    assert model.get_blend_weights() == before  # Not mixed with min_weight again.
    assert cb.estimates[0].status == "fallback"
    # The record holds blend weights (summing to 1): the model's, normalised once
    # when training started, and kept bit for bit by the fallback.
    assert cb.estimates[0].weights == cb.state.initial_weights
    np.testing.assert_allclose(cb.estimates[0].weights, list(before.values()))


def test_collapse_warns_once_including_a_hair_above_the_minimum(monkeypatch):
    model, train, heldout = synthetic_setup()
    # Every dO = 0.1; dG = [0.2, 1e-6, 0.2]: head b ends a hair above 0.05, twice.
    start = ([1.0] * 3, [1.0] * 3)
    first = ([0.7, 0.9 - 1e-6, 0.7], [0.8, 1.0 - 1e-6, 0.8])
    second = ([0.4, 0.8 - 2e-6, 0.4], [0.6, 1.0 - 2e-6, 0.6])
    _script(monkeypatch, [start, first, second])
    cb = GBlendCallback(train, heldout, min_weight=0.05, verbose=0, **EVERY_EPOCH)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _fit(model, train, [cb], epochs=2)
    collapsed = [w for w in caught if "collapsed" in str(w.message)]
    assert len(collapsed) == 1, [str(w.message) for w in caught]
    assert "for b (weight 0.0500" in str(collapsed[0].message)
    assert cb.estimates[0].weights[1] > 0.05  # Above the minimum, still warned.
    # Warnings point at the user's `fit` call, not at package code.
    assert collapsed[0].filename == __file__


def test_adaptive_optimizer_warns_once_and_can_be_silenced():
    model, train, heldout = synthetic_setup(optimizer=keras.optimizers.Adam(1e-3))
    cb = GBlendCallback(train, heldout, verbose=0, **EVERY_EPOCH)
    with pytest.warns(AdaptiveOptimizerWarning, match="Adam.*SGD") as caught:
        _fit(model, train, [cb], epochs=2)
    assert len([w for w in caught if "adaptive" in str(w.message)]) == 1
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=AdaptiveOptimizerWarning)
        _fit(model, train, [cb], epochs=1)


def _with_nan(pair, modality):
    x, y = pair
    x = dict(x, **{modality: x[modality].copy()})
    x[modality][0, 0] = np.nan
    return x, y


def test_nan_in_a_heldout_dataset_fails_before_training():
    model, train, heldout = synthetic_setup()
    cb = GBlendCallback(train, _batched(_with_nan(heldout, "b"), 8), verbose=0)
    _fails_before_training(
        model, train, [cb], r"`heldout` holds NaN or inf in modality 'b' \(example 0\)"
    )


def test_non_finite_measured_loss_names_v_and_the_head(monkeypatch):
    model, train, heldout = synthetic_setup()
    _script(monkeypatch, [([1.0] * 3, [1.0, math.nan, 1.0])])
    cb = GBlendCallback(train, heldout, verbose=0, **EVERY_EPOCH)
    _fails_before_training(
        model, train, [cb], r"non-finite loss on `heldout` \(V\) for head\(s\) \['b'\]"
    )


def test_diverged_training_stops_with_a_message():
    model, train, heldout = synthetic_setup(learning_rate=1e8)
    cb = GBlendCallback(train, heldout, warmup_epochs=1, super_epoch=1, verbose=0)
    with pytest.warns(GBlendWarning, match="training loss is nan at epoch 1: stopped"):
        history = _fit(model, train, [cb], epochs=4)
    assert len(history.history["loss"]) == 1


def _bad_inputs(train, heldout):
    x, y = heldout
    y_train = train[1]
    no_labels = tf.data.Dataset.from_tensor_slices(x).batch(8)
    return {
        "string labels": (dict(heldout=(x, y.astype(str))), "dtype <U"),
        "no labels": (dict(heldout=no_labels), "needs the labels"),
        "unbatched": (
            dict(heldout=tf.data.Dataset.from_tensor_slices(heldout)),
            r"unbatched dataset.*\.batch",
        ),
        "same set": (dict(heldout=train), f"every one of its {len(y_train)} examples"),
        "nan": (
            dict(heldout=_with_nan(heldout, "b")),
            r"`heldout` holds NaN or inf in "
            r"modality 'b' \(example 0\), which feeds heads \['b', 'fused'\]",
        ),
    }


@pytest.mark.parametrize(
    "case", ["string labels", "no labels", "unbatched", "same set", "nan"]
)
def test_data_mistakes_fail_at_construction(case):
    _, train, heldout = synthetic_setup()
    kwargs, match = _bad_inputs(train, heldout)[case]
    with pytest.raises(ValueError, match=match):
        GBlendCallback(train, **kwargs)


def test_overlapping_heldout_warns():
    _, train, heldout = synthetic_setup()
    x, y = heldout
    leaky = (
        {k: np.concatenate([x[k], train[0][k][:3]]) for k in x},
        np.concatenate([y, train[1][:3]]),
    )
    match = f"3 of the {len(leaky[1])} examples of `heldout`"
    with pytest.warns(GBlendWarning, match=match):
        GBlendCallback(train, leaky)


def _fails_before_training(model, train, callbacks, match):
    with pytest.raises(ValueError, match=match):
        _fit(model, train, callbacks, epochs=1)
    assert int(model.optimizer.iterations.numpy()) == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            dict(min_weight=0.5),
            r"`min_weight` must be in \[0, 1/num_heads\] = \[0, 0.3333\]",
        ),
        (dict(labels_plus=4), r"`heldout`: labels must be class indices in \[0, 4\)"),
        (
            dict(drop_key="b"),
            r"must hold every model input \['a', 'b'\]. Missing \['b'\]",
        ),
        (dict(wrong_width=True), r"input 'b' must have shape \(batch, \*\(16,\)\)"),
    ],
)
def test_model_mistakes_fail_in_on_train_begin(kwargs, match):
    model, train, heldout = synthetic_setup()
    x, y = heldout
    if "labels_plus" in kwargs:
        heldout = (x, y + kwargs.pop("labels_plus"))
    if "drop_key" in kwargs:
        heldout = ({"a": x["a"]}, y)
        kwargs.pop("drop_key")
    if kwargs.pop("wrong_width", False):
        heldout = ({"a": x["a"], "b": x["b"][:, :8]}, y)
    cb = GBlendCallback(train, heldout, **kwargs)
    _fails_before_training(model, train, [cb], match)


def test_two_callbacks_on_one_model_are_refused():
    model, train, heldout = synthetic_setup()
    callbacks = [GBlendCallback(train, heldout), GBlendCallback(train, heldout)]
    _fails_before_training(model, train, callbacks, "expected one GBlendCallback")
    # The same callback in a later fit is fine.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GBlendWarning)
        _fit(model, train, callbacks[:1], epochs=1)


def test_requires_a_gblend_model():
    plain = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    plain.compile(loss="mse")
    _, train, heldout = synthetic_setup()
    cb = GBlendCallback(train, heldout, verbose=0)
    with pytest.raises(ValueError, match="needs a GBlendModel.*Received Sequential"):
        plain.fit(np.zeros((4, 2)), np.zeros((4, 2)), callbacks=[cb], verbose=0)


@pytest.mark.filterwarnings("ignore::keras_gblend.GBlendWarning")
def test_num_heads_scale_assigns_scaled_weights_and_logs_the_blend():
    model, train, heldout = synthetic_setup()
    cb = GBlendCallback(
        train, heldout, weight_scale="num_heads", verbose=0, **EVERY_EPOCH
    )
    history = _fit(model, train, [cb], epochs=2)
    assigned = np.array(list(model.get_blend_weights().values()))
    np.testing.assert_allclose(assigned, 3 * np.array(cb.estimates[-1].weights))
    assert history.history["gblend_weight_a"][-1] == cb.estimates[-1].weights[0]


@pytest.mark.filterwarnings("ignore::keras_gblend.GBlendWarning")
def test_estimator_callable_receives_every_measurement():
    model, train, heldout = synthetic_setup()
    received = []

    def first_vs_last(measurements, *, min_weight, overfit_floor, fallback):
        received.append([m.epoch for m in measurements])
        assert all(isinstance(m, Measurement) for m in measurements)
        first, last = measurements[0], measurements[-1]
        return formula.blend_from_losses(
            first.train, first.heldout, last.train, last.heldout,
            min_weight=min_weight, overfit_floor=overfit_floor, fallback=fallback,
        )  # fmt: skip

    cb = GBlendCallback(
        train, heldout, estimator=first_vs_last, verbose=0, **EVERY_EPOCH
    )
    _fit(model, train, [cb], epochs=2)
    assert received == [[0, 1], [0, 1, 2]]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(warmup_epochs=-1), "`warmup_epochs` must be an int >= 0"),
        (dict(super_epoch=0), "`super_epoch` must be an int >= 1"),
        (dict(smoothing=1.0), r"`smoothing` must be in \[0, 1\)"),
        (dict(mode="fast"), "`mode` must be one of"),
        (dict(mode="exact"), "`train_data` must be given with mode='exact'"),
        (dict(min_weight=2.0), "`min_weight` must be in"),
        (dict(weight_scale="max"), r"`weight_scale` must be one of \['max_one'"),
        (dict(estimator="robust?"), r"`estimator` must be a callable or one of"),
    ],
)
def test_bad_arguments(kwargs, match):
    _, train, heldout = synthetic_setup()
    with pytest.raises(ValueError, match=match):
        GBlendCallback(train, heldout, **kwargs)


def test_empty_heldout_set():
    _, train, heldout = synthetic_setup()
    x, y = heldout
    empty = ({k: v[:0] for k, v in x.items()}, y[:0])
    with pytest.raises(ValueError, match="`heldout` is empty"):
        GBlendCallback(train, empty)


class _Weights(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seen = []

    def on_epoch_end(self, epoch, logs=None):
        self.seen.append(self.model.get_blend_weights())


def test_early_stopping_and_reduce_lr_monitor_mean_head_loss_without_mode():
    # Issue 20, item 1: the key of the unweighted objective, monitored with
    # Keras's default mode="auto", while the weights change at every epoch.
    model, train, heldout = synthetic_setup()
    # The default preset: weights summing to 3, so `loss` is on another scale.
    cb = GBlendCallback(train, heldout, verbose=0, warmup_epochs=0, super_epoch=1)
    stop = keras.callbacks.EarlyStopping(monitor="mean_head_loss", patience=10)
    plateau = keras.callbacks.ReduceLROnPlateau(
        monitor="val_mean_head_loss", patience=10
    )
    weights = _Weights()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = _fit(
            model, train, [cb, stop, plateau, weights], 3, validation_data=heldout
        )
    assert not [w for w in caught if "mean_head_loss" in str(w.message)]
    assert stop.monitor_op is keras.ops.less  # "auto" resolved to "min".
    assert plateau.monitor_op is keras.ops.less
    logged = history.history
    for prefix in ("", "val_"):
        heads = np.mean([logged[f"{prefix}{h}_loss"] for h in HEADS], axis=0)
        np.testing.assert_allclose(logged[f"{prefix}mean_head_loss"], heads, rtol=1e-6)
    assert stop.best == min(logged["mean_head_loss"])
    # The weights moved, so the blended loss is no longer the uniform mean.
    last = weights.seen[-2]  # In force during the last epoch.
    assert max(last.values()) > 1.5 * min(last.values())
    blended = sum(last[h] * logged[f"{h}_loss"][-1] for h in HEADS)
    # (Keras averages per-head losses over batches unweighted: a smaller last
    # batch makes this approximate.)
    assert logged["loss"][-1] == pytest.approx(blended, rel=0.02)
    assert logged["loss"][-1] != pytest.approx(logged["mean_head_loss"][-1], rel=0.05)


def test_monitoring_the_blended_loss_warns_once_naming_the_key():
    model, train, heldout = synthetic_setup()
    cb = GBlendCallback(train, heldout, verbose=0, **EVERY_EPOCH)
    callbacks = [
        cb,
        keras.callbacks.EarlyStopping(monitor="loss", patience=10),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", patience=10),
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _fit(model, train, callbacks, 3, validation_data=heldout)
    said = [str(w.message) for w in caught if "mean_head_loss" in str(w.message)]
    assert len(said) == 1, said
    assert issubclass(
        next(w for w in caught if "mean_head_loss" in str(w.message)).category,
        GBlendWarning,
    )
    assert "EarlyStopping(monitor='loss') -> monitor='mean_head_loss'" in said[0]
    assert (
        "ReduceLROnPlateau(monitor='val_loss') -> monitor='val_mean_head_loss'"
        in (said[0])
    )


@pytest.mark.parametrize(
    ("case", "match"),
    [
        ("one example", r"`heldout` \(V\) must hold at least 2 examples.*Received 1"),
        ("one class", r"at least 2 classes.*Received \d+ examples, all of class 2\."),
        ("one class, one-hot", r"at least 2 classes.*all of class 2\."),
        ("one class, dataset", r"at least 2 classes.*all of class 2\."),
        ("one class, dataset, exact", r"at least 2 classes.*all of class 2\."),
    ],
)
def test_heldout_too_small_to_measure_fails_before_training(case, match):
    model, train, heldout = synthetic_setup()
    x, y = heldout
    if case == "one example":
        heldout = ({k: v[:1] for k, v in x.items()}, y[:1])
    else:
        heldout = (x, np.full_like(y, 2))
    if "one-hot" in case:
        model.compile(optimizer="sgd", loss="categorical_crossentropy")
        heldout = (x, keras.utils.to_categorical(heldout[1], 4))
        train = (train[0], keras.utils.to_categorical(train[1], 4))
    if "dataset" in case:
        heldout = _batched(heldout, 8)
    exact = dict(mode="exact", train_data=train) if "exact" in case else {}
    cb = GBlendCallback(train, heldout, verbose=0, **EVERY_EPOCH, **exact)
    _fails_before_training(model, train, [cb], match)


def test_fit_that_ends_before_the_first_estimate_warns():
    model, train, heldout = synthetic_setup()
    cb = GBlendCallback(train, heldout, warmup_epochs=2, super_epoch=3, verbose=0)
    match = (
        r"fit\(epochs=2\) ends before the first estimate, made after epoch 5 "
        r"\(warmup_epochs=2, super_epoch=3\): the blend weights stay"
    )
    with pytest.warns(GBlendWarning, match=match):
        _fit(model, train, [cb], epochs=2)
    assert not cb.estimates
    # Exact mode estimates at the end of the warm-up: 2 epochs are enough.
    exact = GBlendCallback(
        train, heldout, mode="exact", train_data=train, warmup_epochs=2, verbose=0
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _fit(model, train, [exact], epochs=2)
    assert not [w for w in caught if "before the first estimate" in str(w.message)]
    assert [e.epoch for e in exact.estimates] == [2]


def test_min_weight_above_one_over_num_heads_is_refused_at_fit_saying_when():
    # Issue 20, item 7: the constructor cannot know the number of heads.
    _, train, heldout = synthetic_setup()
    with pytest.raises(
        ValueError,
        match=r"`min_weight` must be in \[0, 1\) here, and at most 1/num_heads "
        r"\(checked when fit starts, before any epoch\)\. Received 1\.5",
    ):
        GBlendCallback(train, heldout, min_weight=1.5)
    model, train, heldout = synthetic_setup()
    cb = GBlendCallback(train, heldout, min_weight=0.34, **EVERY_EPOCH)
    _fails_before_training(
        model,
        train,
        [cb],
        r"`min_weight` must be in \[0, 1/num_heads\] = \[0, 0.3333\] for 3 heads "
        r"\(checked when fit starts, before any epoch\)\. Received 0\.34",
    )
