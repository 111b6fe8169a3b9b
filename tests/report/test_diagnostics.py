"""Seeing what G-Blend does: history readers, plots, TensorBoard, warnings, output.

One tiny training run (module fixture) writes the callback's state JSON, a
`CSVLogger` file and a `History`; the readers must agree with each other and with
`GBlendCallback.estimates`. Every test here takes a few seconds.
"""

import glob
import os
import re
import types
import warnings

import keras
import numpy as np
import pytest

from keras_gblend import GBlendCallback, GBlendWarning
from keras_gblend.blend import measure, state
from keras_gblend.common import messages
from keras_gblend.report import history as history_lib
from tests.helpers import run_python, synthetic_setup, tool

HEADS = ("a", "b", "fused")
FIELDS = {"weight": "weights", "dG": "d_g", "dO": "d_o", "ogr": "ogr"}


def _callback(train, heldout, **kwargs):
    """The paper's configuration (its numbers are what these tests check)."""
    kwargs.setdefault("verbose", 0)
    kwargs.setdefault("preset", "paper")
    return GBlendCallback(train, heldout, warmup_epochs=0, super_epoch=1, **kwargs)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Trains 3 epochs with an estimate every epoch; records every format."""
    keras.utils.set_random_seed(0)
    folder = tmp_path_factory.mktemp("run")
    model, train, heldout = synthetic_setup()
    state_path = str(folder / "state.json")
    csv_path = str(folder / "log.csv")
    callback = _callback(train, heldout, state_path=state_path)
    history = model.fit(
        *train,
        epochs=3,
        batch_size=16,
        verbose=0,
        callbacks=[callback, keras.callbacks.CSVLogger(csv_path)],
    )
    return types.SimpleNamespace(
        callback=callback,
        history=history,
        state_path=state_path,
        csv_path=csv_path,
        folder=folder,
    )


def _expected(callback, quantity):
    return np.array([getattr(e, FIELDS[quantity]) for e in callback.estimates])


def _assert_matches_estimates(read, callback, quantities=tuple(FIELDS)):
    assert read.head_names == HEADS
    for quantity in quantities:
        expected = _expected(callback, quantity)
        epochs = [1, 2, 3]
        if quantity == "weight" and len(read.epochs["weight"]) == 4:
            # The state also records the weights in force before training.
            expected = np.vstack([callback.state.initial_weights, expected])
            epochs = [0, 1, 2, 3]
        np.testing.assert_array_equal(read.epochs[quantity], epochs)
        np.testing.assert_allclose(read.values[quantity], expected, rtol=1e-6)


def test_read_state_json_matches_the_callback(run):
    read = history_lib.read_history(run.state_path)
    _assert_matches_estimates(read, run.callback)
    # Measurements: before training (epoch 0) and after every epoch.
    np.testing.assert_array_equal(read.epochs["train_loss"], [0, 1, 2, 3])
    train = [m.train for m in run.callback.measurements]
    np.testing.assert_allclose(read.values["train_loss"], train)
    epochs, values = read.series("heldout_loss", "b")
    np.testing.assert_allclose(
        values, [m.heldout[1] for m in run.callback.measurements]
    )
    assert epochs.tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("source", ["csv", "history", "history_dict", "callback"])
def test_other_sources_agree_with_the_state_json(run, source):
    sources = {
        "csv": run.csv_path,
        "history": run.history,
        "history_dict": run.history.history,
        "callback": run.callback,
    }
    read = history_lib.read_history(sources[source])
    _assert_matches_estimates(read, run.callback)
    reference = history_lib.read_history(run.state_path)
    # Logs hold the measurements made after each epoch, not the one before
    # training; the callback itself holds them all, like its state JSON.
    first = 0 if source == "callback" else 1
    for quantity in ("train_loss", "heldout_loss"):
        np.testing.assert_array_equal(read.epochs[quantity], [0, 1, 2, 3][first:])
        np.testing.assert_allclose(
            read.values[quantity], reference.values[quantity][first:], rtol=1e-6
        )


def test_write_history_csv_round_trip(run, tmp_path):
    csv_path = tmp_path / "h.csv"
    history_lib.write_history_csv(csv_path, run.callback.state)
    header = csv_path.read_text().splitlines()[0].split(",")
    assert header[:3] == ["epoch", "status", "gblend_weight_a"]
    _assert_matches_estimates(history_lib.read_history(csv_path), run.callback)
    assert not list(tmp_path.glob(".tmp-*"))  # Atomic writes leave no temp file.


def test_csv_reader_handles_na_resumed_rows_and_underscored_heads(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text(
        "epoch,loss,gblend_dG_optical_flow,gblend_dG_fused,"
        "gblend_weight_optical_flow,gblend_weight_fused,"
        "gblend_train_loss_optical_flow,gblend_train_loss_fused,"
        "val_gblend_weight_fused\n"
        "0,1.0,nan,nan,0.5,0.5,1.0,1.1,NA\n"
        "1,0.9,0.2,0.1,0.2,0.8,NA,NA,NA\n"
        "2,0.8,0.2,0.1,0.2,0.8,0.7,0.6,NA\n"
        "2,0.7,0.3,0.1,0.3,0.7,0.6,0.5,NA\n"  # Resumed: the epoch was re-run.
    )
    read = history_lib.read_history(path)
    assert read.head_names == ("optical_flow", "fused")
    assert read.epochs["weight"].tolist() == [1, 2, 3]
    assert read.values["weight"][:, 0].tolist() == [0.5, 0.2, 0.3]
    # dG is logged every epoch but changes only at estimates.
    assert read.epochs["dG"].tolist() == [2, 3]
    assert read.epochs["train_loss"].tolist() == [1, 3]
    assert read.values["train_loss"].tolist() == [[1.0, 1.1], [0.6, 0.5]]


def test_state_with_initial_weights_starts_at_epoch_zero():
    blend_state = state.BlendState(("a", "fused"), (0.5, 0.5)).add(
        state.Estimate(2, "ok", [0.1, 0.9], [0.1, 0.2], [0.1, 0.1], [1.0, 0.5])
    )
    for source in (blend_state, blend_state.to_dict()):
        read = history_lib.read_history(source)
        assert read.epochs["weight"].tolist() == [0, 2]
        assert read.values["weight"].tolist() == [[0.5, 0.5], [0.1, 0.9]]
        assert read.epochs["dG"].tolist() == [2]


def test_history_dict_with_ragged_lists_warns_and_drops_them():
    logs = {
        "loss": [1.0, 0.9, 0.8],
        "gblend_weight_a": [0.5, 0.5, 0.9],
        "gblend_weight_fused": [0.5, 0.5, 0.1],
        "gblend_train_loss_a": [1.0],
        "gblend_train_loss_fused": [1.2],
    }
    with pytest.warns(UserWarning, match=r"gblend_train_loss_a.*fewer entries"):
        read = history_lib.read_history(logs)
    assert "train_loss" not in read.values
    assert read.epochs["weight"].tolist() == [1, 2, 3]


def test_read_history_without_gblend_keys_says_what_to_check():
    with pytest.raises(ValueError, match=r"before the logger.*\['loss'\]"):
        history_lib.read_history({"loss": [1.0, 0.5]})
    with pytest.raises(ValueError, match="must be a path"):
        history_lib.read_history(42)
    with pytest.raises(ValueError, match="`quantity` must be one of"):
        history_lib.read_history({"gblend_weight_a": [1.0]}).series("w", "a")


@pytest.fixture(scope="module")
def plot_tool():
    """The plot tool imported as a module (its absl flags are defined once)."""
    pytest.importorskip("matplotlib")
    return tool("plot_blend")


def _assert_pngs(paths):
    for path in paths:
        with open(path, "rb") as handle:
            assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
        assert 5_000 < os.path.getsize(path) < 200_000, path


def test_plot_command_writes_three_pngs(run, tmp_path):
    out = tmp_path / "plots"
    result = run_python(
        "-m", "tools.plot_blend", f"--history={run.state_path}", f"--output_dir={out}"
    )
    paths = result.stdout.split()
    assert [os.path.basename(p) for p in paths] == [
        "gblend_weights.png",
        "gblend_deltas.png",
        "gblend_losses.png",
    ]
    _assert_pngs(paths)


def test_plot_all_from_csv_skips_what_is_missing(run, plot_tool, tmp_path):
    paths, skipped = plot_tool.plot_all(run.csv_path, tmp_path, prefix="csv_")
    assert sorted(paths) == ["deltas", "losses", "weights"] and not skipped
    _assert_pngs(paths.values())
    # A history without losses: the loss plot is skipped with the reason.
    paths, skipped = plot_tool.plot_all(
        {k: v for k, v in run.history.history.items() if "_loss_" not in k},
        tmp_path,
        prefix="x_",
    )
    assert sorted(paths) == ["deltas", "weights"]
    assert "state JSON" in skipped["losses"]


def _tensorboard_scalars(log_dir):
    from tensorboard.backend.event_processing import event_accumulator

    accumulator = event_accumulator.EventAccumulator(
        os.path.join(log_dir, "train"), size_guidance={"tensors": 0}
    )
    accumulator.Reload()
    return {
        tag: {e.step: float(np.asarray(_tensor(e))) for e in accumulator.Tensors(tag)}
        for tag in accumulator.Tags()["tensors"]
        if tag.startswith("epoch_")
    }


def _tensor(event):
    import tensorflow as tf

    return tf.make_ndarray(event.tensor_proto)


def test_tensorboard_event_files_hold_the_callback_values(tmp_path):
    pytest.importorskip(
        "tensorboard", reason="keras.callbacks.TensorBoard needs `tensorboard`"
    )
    model, train, heldout = synthetic_setup()
    callback = _callback(train, heldout)
    log_dir = str(tmp_path / "tb")
    model.fit(
        *train,
        epochs=2,
        batch_size=16,
        verbose=0,
        callbacks=[callback, keras.callbacks.TensorBoard(log_dir)],
    )
    assert glob.glob(os.path.join(log_dir, "train", "events.out.tfevents.*"))
    scalars = _tensorboard_scalars(log_dir)
    for step, estimate in enumerate(callback.estimates):
        measured = callback.measurements[step + 1]
        for column, head in enumerate(HEADS):
            expected = {
                "weight": estimate.weights[column],
                "dG": estimate.d_g[column],
                "dO": estimate.d_o[column],
                "ogr": estimate.ogr[column],
                "train_loss": measured.train[column],
                "heldout_loss": measured.heldout[column],
            }
            for quantity, value in expected.items():
                tag = f"epoch_gblend_{quantity}_{head}"
                assert tag in scalars, sorted(scalars)
                np.testing.assert_allclose(scalars[tag][step], value, rtol=1e-6)


def _fit_expecting(model, train, callback, match):
    """Fits one epoch and expects a GBlendWarning matching `match`.

    Keras's own numpy-2 DeprecationWarning (`Variable.__array__` without `copy`)
    is silenced inside: `pytest.warns` would re-raise it as an error.
    """
    with pytest.warns(GBlendWarning, match=match):
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore",
                message="__array__ implementation",
                category=DeprecationWarning,
            )
            model.fit(*train, epochs=1, batch_size=32, verbose=0, callbacks=[callback])


def _scripted_losses(monkeypatch, before, after):
    """Replaces the callback's measurements: `before` then `after` (T', V) pairs."""
    calls = [before[0], before[1], after[0], after[1]]

    def fake(model, data_, batch_size=256, loss=None):
        mean = np.asarray(calls.pop(0), np.float64)
        return measure.HeadLosses(mean, np.zeros_like(mean), 24)

    monkeypatch.setattr(measure, "head_loss_stats", fake)


def test_collapsed_head_warns_with_its_numbers(monkeypatch):
    _scripted_losses(
        monkeypatch,
        before=([1.0, 1.0, 1.0], [1.0, 1.0, 1.0]),
        after=([0.5, 0.6, 0.6], [1.25, 0.8, 0.7]),
    )
    model, train, heldout = synthetic_setup()
    callback = _callback(train, heldout)
    _fit_expecting(
        model,
        train,
        callback,
        match=r"epoch 1: weight collapsed to the minimum 0.05 for "
        r"a \(weight 0\.0500, dG=-0\.25, dO=\+0\.75\)",
    )
    # Raw weights dG / dO^2 = [0, 5, 30] / 35, mixed with uniform: 0.05 + 0.85 w.
    weights = model.get_blend_weights()
    expected = 0.05 + 0.85 * np.array([0, 5, 30]) / 35
    np.testing.assert_allclose([weights[h] for h in HEADS], expected, rtol=1e-6)


def test_no_learning_at_all_warns_in_a_real_run():
    model, train, heldout = synthetic_setup(learning_rate=0.0)  # Every dG is 0.
    callback = _callback(train, heldout)
    _fit_expecting(
        model, train, callback, match=r"epoch 1: no head generalised \(a dG=\+0, "
    )


def test_verbose_prints_one_concise_line_per_estimate(capsys):
    model, train, heldout = synthetic_setup()
    callback = _callback(train, heldout, verbose=1)
    model.fit(*train, epochs=3, batch_size=16, verbose=0, callbacks=[callback])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert len(lines) == len(callback.estimates) == 3
    for epoch, line in enumerate(lines, start=1):
        assert line.startswith(f"G-Blend epoch {epoch}: weights a ")
        assert all(f" {h} " in line for h in HEADS) and "dG" in line and "dO" in line
        assert len(line) < 140, line


@pytest.mark.filterwarnings("ignore::keras_gblend.GBlendWarning")
def test_progress_bar_stays_readable_and_estimate_lines_follow_it(capsys):
    model, train, heldout = synthetic_setup()
    callback = GBlendCallback(train, heldout, warmup_epochs=1, super_epoch=1)
    model.fit(*train, epochs=3, batch_size=16, verbose=1, callbacks=[callback])
    out = re.sub(r"\x1b\[[0-9;]*m", "", capsys.readouterr().out)  # No colours.
    assert "Epoch 1/3" in out and "Epoch 3/3" in out
    assert re.search(r"\d+/\d+ .*step - .*loss: \d", out)
    assert "nan" not in out  # Nothing unmeasured is shown as NaN.
    # Every epoch, the reference measurement's and the estimates' included, shows
    # the 3 weights only: the 15 per-estimate values are in the estimate line.
    for epoch in (1, 2, 3):
        bar = out.split(f"Epoch {epoch}/3")[1].split("Epoch ")[0]
        assert re.findall(r"gblend_\w+", bar) == [
            "gblend_weight_a",
            "gblend_weight_b",
            "gblend_weight_fused",
        ]
    lines = re.findall(r"^G-Blend epoch (\d+): weights", out, re.MULTILINE)
    assert lines == ["2", "3"]
    # Each estimate line starts a line of its own, after its epoch's bar.
    line = out.index("G-Blend epoch 2")
    assert out[line - 1] == "\n" and out.index("Epoch 3/3") > line


def test_collapse_names_the_reason_each_head_gives():
    # Issue 20, item 7: "overfits faster than it generalises" was said of every
    # head at the floor, even one with dG > 0. dG/dO^2 = [-, 1, 1000].
    record = state.Estimate(
        3,
        "ok",
        [0.05, 0.05, 0.9],
        [-0.2, 0.61, 0.1],
        [0.1, 0.78, 0.01],
        [2.0, 1.28, 0.1],
    )
    (warned, line) = messages.estimate_messages(HEADS, record, None, 0.05)
    text = str(warned)
    assert text.startswith("G-Blend at epoch 3: weight collapsed to the minimum 0.05")
    assert (
        "a (weight 0.0500, dG=-0.2, dO=+0.1): it does not generalise (dG <= 0)" in text
    )
    assert (
        "b (weight 0.0500, dG=+0.61, dO=+0.78): it generalises (dG > 0), but its "
        "dG/dO^2 is small next to the other heads'" in text
    )
    assert "overfits faster" not in text
    assert line.startswith("G-Blend epoch 3: weights a 0.050")


def test_min_weight_of_one_over_num_heads_says_every_weight_is_forced_equal(
    monkeypatch,
):
    # Issue 20, item 7: at min_weight = 1/K no head "collapsed": all are equal.
    _scripted_losses(
        monkeypatch,
        before=([1.0, 1.0, 1.0], [1.0, 1.0, 1.0]),
        after=([0.5, 0.6, 0.6], [1.25, 0.8, 0.7]),  # dG = [-0.25, +0.2, +0.3]
    )
    model, train, heldout = synthetic_setup()
    callback = _callback(train, heldout, min_weight=1 / 3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(*train, epochs=1, batch_size=32, verbose=0, callbacks=[callback])
    said = [str(w.message) for w in caught if issubclass(w.category, GBlendWarning)]
    assert not [s for s in said if "collapsed" in s], said
    forced = [s for s in said if "is 1/num_heads for 3 heads" in s]
    assert len(forced) == 1, said
    assert "every weight is forced to 0.3333" in forced[0]
    assert "never change the weights" in forced[0]
    assert callback.estimates[0].weights == pytest.approx([1 / 3] * 3)
