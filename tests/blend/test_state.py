"""Tests of the G-Blend record and its file: one schema, one epoch convention."""

import json
import math
import os
import stat

import pytest

from keras_gblend.blend import state, state_file
from keras_gblend.blend.state import BlendState, Estimate, Measurement
from keras_gblend.common import io_utils

HEADS = ("a", "b", "fused")

# Written by GBlendCallback at commit 3441d2b (format version 1): measurements
# counted from -1 (before training), estimates already counting epochs completed.
V1_FILE = {
    "version": 1,
    "head_names": ["a", "b", "fused"],
    "initial_weights": {"a": 0.2, "b": 0.3, "fused": 0.5},
    "measurements": [
        {"epoch": -1, "train": [1.4, 1.5, 1.45], "heldout": [1.41, 1.52, 1.46]},
        {"epoch": 0, "train": [1.2, 1.0, 1.1], "heldout": [1.3, 1.4, 1.2]},
    ],
    "estimates": [
        {
            "epoch": 1,
            "status": "ok",
            "weight_a": 0.6,
            "weight_b": 0.1,
            "weight_fused": 0.3,
            "dG_a": 0.11,
            "dG_b": 0.12,
            "dG_fused": 0.26,
            "dO_a": -0.09,
            "dO_b": 0.38,
            "dO_fused": -0.1,
            "ogr_a": 0.8,
            "ogr_b": 3.2,
            "ogr_fused": 0.4,
            "train_loss_a": 1.2,
            "train_loss_b": 1.0,
            "train_loss_fused": 1.1,
            "heldout_loss_a": 1.3,
            "heldout_loss_b": 1.4,
            "heldout_loss_fused": 1.2,
        }
    ],
}


def _state():
    return (
        BlendState(HEADS, (0.2, 0.3, 0.5))
        .add(Measurement(0, [1.4, 1.5, 1.45], [1.41, 1.52, 1.46], [0.1] * 3, None))
        .add(Measurement(3, [1.2, 1.0, 1.1], [1.3, 1.4, 1.2]))
        .add(Estimate(3, "ok", [0.6, 0.1, 0.3], [0.1] * 3, [0.2] * 3, [2.0] * 3))
        .add(Measurement(6, [1.0, 0.6, 0.9], [1.2, 1.5, 1.0]))
        .add(
            Estimate(
                6, "fallback", [0.6, 0.1, 0.3], [-0.1] * 3, [0.3] * 3, [math.inf] * 3
            )
        )
    )


def test_round_trip_through_the_file_keeps_every_value(tmp_path):
    path = tmp_path / "state.json"
    original = _state()
    state_file.save(path, original)
    assert state_file.load(path) == original
    saved = json.loads(path.read_text())
    assert saved["version"] == 2
    assert saved["measurements"][0]["train_sem"] == [0.1] * 3
    assert saved["measurements"][1]["train_sem"] is None


def test_version_1_file_loads_with_epochs_completed(tmp_path):
    path = tmp_path / "old.json"
    path.write_text(json.dumps(V1_FILE))
    loaded = state_file.load(path)
    assert loaded.head_names == HEADS
    assert loaded.initial_weights == (0.2, 0.3, 0.5)
    # Version 1 measured "epoch -1" before training and "epoch 0" after epoch 1.
    assert [m.epoch for m in loaded.measurements] == [0, 1]
    assert loaded.measurements[1].heldout == (1.3, 1.4, 1.2)
    (estimate,) = loaded.estimates
    assert estimate.epoch == 1 and estimate.status == "ok"
    assert estimate.weights == (0.6, 0.1, 0.3)
    assert estimate.d_o == (-0.09, 0.38, -0.1)
    assert estimate.ogr == (0.8, 3.2, 0.4)


def test_the_record_reads_only_the_current_format_and_names_the_reader():
    with pytest.raises(ValueError, match="state_file.load / state_from_dict"):
        BlendState.from_dict(V1_FILE)
    upgraded = state_file.upgrade_v1(V1_FILE)
    assert upgraded["version"] == 2 and upgraded["head_names"] == list(HEADS)
    assert BlendState.from_dict(upgraded) == state_file.state_from_dict(V1_FILE)
    assert state_file.state_from_dict(_state().to_dict()) == _state()


def test_truncate_keeps_records_up_to_the_resumed_epoch():
    full = _state()
    assert full.current_weights == (0.6, 0.1, 0.3)
    cut = full.truncate(5)
    assert [m.epoch for m in cut.measurements] == [0, 3]
    assert [e.epoch for e in cut.estimates] == [3]
    before_first = full.truncate(2)
    assert before_first.current_weights == (0.2, 0.3, 0.5)
    assert [m.epoch for m in before_first.measurements] == [0]


def test_add_checks_the_number_of_heads():
    with pytest.raises(ValueError, match=r"one value per head \['a', 'b', 'fused'\]"):
        BlendState(HEADS).add(Measurement(1, [1.0, 1.0], [1.0, 1.0]))
    with pytest.raises(ValueError, match="must be a Measurement or an Estimate"):
        BlendState(HEADS).add({"epoch": 1})
    with pytest.raises(
        ValueError, match=r"`heldout` must hold one value per head \(2\)"
    ):
        Measurement(1, [1.0, 1.0], [1.0])


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ('{"version": 7, "estimates": []}', "Unknown G-Blend state version 7"),
        ('{"loss": [1.0]}', "not a G-Blend state file"),
        ("not json", "is not a JSON G-Blend state"),
        ('{"version": 2, "head_names": ["a"], "estimates": []}', "Malformed"),
        ('{"version": 1, "estimates": []}', "holds no head names"),
    ],
)
def test_bad_files_fail_with_the_path_and_the_reason(tmp_path, content, match):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=match) as error:
        state_file.load(path)
    assert str(path) in str(error.value)


def test_atomic_writes_respect_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        io_utils.atomic_write_text(tmp_path / "x.txt", "hello")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "x.txt").st_mode) == 0o640


def test_log_values_follow_the_table_of_log_keys():
    measured = Measurement(2, [1.0, 2.0, 3.0], [1.5, 2.5, 3.5])
    estimated = Estimate(
        2, "ok", [0.2, 0.3, 0.5], [0.1, 0.2, 0.3], [1, 2, 3], [4, 5, 6]
    )
    logged = {**state.log_values(measured, HEADS), **state.log_values(estimated, HEADS)}
    expected = {
        f"gblend_{quantity}_{head}": getattr(record, attribute)[i]
        for quantity, (kind, attribute) in state.LOG_KEYS.items()
        for record in (measured, estimated)
        if isinstance(record, kind)
        for i, head in enumerate(HEADS)
    }
    assert logged == expected and len(logged) == len(state.LOG_KEYS) * len(HEADS)
    assert logged["gblend_dO_b"] == 2.0 and logged["gblend_heldout_loss_fused"] == 3.5


def test_logs_at_an_epoch_hold_its_records_then_the_weights_in_force():
    s = BlendState(HEADS, (0.2, 0.3, 0.5)).add(Measurement(1, [1] * 3, [2] * 3))
    s = s.add(Measurement(2, [3] * 3, [4] * 3))
    s = s.add(Estimate(2, "ok", [0.6, 0.3, 0.1], [1] * 3, [1] * 3, [1] * 3))
    at_1, at_2, at_3 = s.logs_at(1), s.logs_at(2), s.logs_at(3)
    # Each epoch's own records; the weights in force are the state's latest
    # (the callback asks at the epoch it has just recorded).
    assert at_1["gblend_train_loss_a"] == 1.0 and "gblend_dG_a" not in at_1
    assert at_2["gblend_train_loss_a"] == 3.0 and at_2["gblend_dG_a"] == 1.0
    assert "gblend_train_loss_a" not in at_3 and "gblend_dG_a" not in at_3
    weights = ["gblend_weight_a", "gblend_weight_b", "gblend_weight_fused"]
    for logs in (at_1, at_2, at_3):
        assert list(logs)[-3:] == weights  # Last, as Keras's logs had them.
        assert [logs[k] for k in weights] == [0.6, 0.3, 0.1]


def test_resume_truncates_and_refuses_a_state_of_other_heads():
    s = BlendState(HEADS, (0.2, 0.3, 0.5)).add(Measurement(3, [1] * 3, [2] * 3))
    assert s.resume(HEADS, 2).measurements == ()
    with pytest.raises(ValueError, match=r"heads \['a', 'fused'\], not of \['a', 'b'"):
        s.resume(("a", "fused"), 2, path="s.json")
