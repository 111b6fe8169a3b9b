"""The package's defaults (issue 16): what a user's first call gets, and the
paper's configuration one name away."""

import json

import keras
import numpy as np
import pytest

from keras_gblend import GBlendCallback, build_gblend_model
from keras_gblend.blend import state_file
from keras_gblend.model import encoders, prediction
from tests.helpers import synthetic_setup


def _dropout_rates(model):
    return sorted(
        layer.rate
        for layer in model._flatten_layers()
        if isinstance(layer, keras.layers.Dropout)
    )


def test_builder_and_encoders_default_to_dropout_half_and_zero_turns_it_off():
    branches = {
        "a": encoders.mlp_encoder((4,), units=(3,), name="a_encoder"),
        "b": encoders.conv_encoder((6, 6, 1), filters=(2,), units=3, name="b_encoder"),
    }
    model = build_gblend_model(branches, num_classes=2)
    # One in each encoder, one before each modality head, one before the fused head.
    assert _dropout_rates(model) == [0.5] * 5
    plain = {
        m: encoders.mlp_encoder((4,), units=(3,), dropout=0.0, name=f"{m}_encoder")
        for m in ("a", "b")
    }
    assert _dropout_rates(build_gblend_model(plain, num_classes=2, dropout=0.0)) == []


def _pairs():
    return tuple(({"m": np.full((4, 1), v)}, np.arange(4) % 2) for v in (0.0, 1.0))


@pytest.mark.parametrize(
    "preset, estimator, scale, output",
    [
        ("default", "fused_floor", "max_one", "auto"),
        ("paper", "paper", "sum_to_one", "keep"),
    ],
)
def test_presets_set_what_is_not_given(preset, estimator, scale, output):
    pair, other = _pairs()
    cb = GBlendCallback(pair, other, preset=preset)
    assert (cb.settings["estimator"], cb.settings["weight_scale"], cb.output) == (
        estimator,
        scale,
        output,
    )
    explicit = GBlendCallback(pair, other, preset=preset, weight_scale="sum_to_one")
    assert explicit.weight_scale == "sum_to_one"  # An argument given wins.
    assert explicit.settings["estimator"] == estimator


def test_unknown_preset_or_output_is_refused_naming_the_argument():
    pair, other = _pairs()
    with pytest.raises(ValueError, match=r"`preset` must be one of .*'papers'"):
        GBlendCallback(pair, other, preset="papers")
    with pytest.raises(ValueError, match=r"`output` must be one of .*'fused'"):
        GBlendCallback(pair, other, output="fused")


def test_default_callback_floors_the_fused_head_and_scales_the_largest_to_one(tmp_path):
    model, train, heldout = synthetic_setup()
    cb = GBlendCallback(train, heldout, warmup_epochs=0, super_epoch=1, verbose=0)
    model.fit(*train, epochs=4, batch_size=16, callbacks=[cb], verbose=0)
    assert [e.status for e in cb.state.estimates] == ["ok"] * 4
    for estimate in cb.state.estimates:
        assert estimate.weights[-1] >= 1 / 3 - 1e-9  # The fused head's share.
    # The most-weighted head trains at the learning rate; the ratios are the blend's.
    assigned = np.array(list(model.get_blend_weights().values()))
    blend = np.array(cb.state.current_weights)
    np.testing.assert_allclose(assigned, blend / blend.max())
    assert assigned.max() == pytest.approx(1.0) and assigned.min() < 1.0


def test_scale_weights_keeps_ratios_and_refuses_unknown_names():
    from keras_gblend.blend.formula import scale_weights

    blend = np.array([0.9, 0.05, 0.05])  # One estimate that leans on one head.
    np.testing.assert_allclose(scale_weights(blend, "max_one"), [1.0, 1 / 18, 1 / 18])
    np.testing.assert_allclose(scale_weights(blend, "num_heads"), [2.7, 0.15, 0.15])
    np.testing.assert_allclose(scale_weights(blend * 2, "sum_to_one"), blend)
    with pytest.raises(ValueError, match=r"`weight_scale` must be one of .*'max'"):
        scale_weights(blend, "max")
    with pytest.raises(ValueError, match=r"`weights` must be finite"):
        scale_weights([0.0, 0.0], "max_one")


def test_default_callback_chooses_the_output_mode_on_v_and_records_it(tmp_path, capsys):
    model, train, heldout = synthetic_setup()
    path = str(tmp_path / "state.json")
    cb = GBlendCallback(train, heldout, warmup_epochs=0, super_epoch=2, state_path=path)
    model.fit(*train, epochs=4, batch_size=16, callbacks=[cb], verbose=0)
    # The choice is the one `choose_mode` makes from the heads' predictions on V.
    probs = model.predict(heldout[0], verbose=0)
    expected = prediction.choose_mode(probs, heldout[1])
    assert model.output_mode == expected.mode
    with open(path) as handle:
        saved = json.load(handle)
    assert saved["output_choice"]["mode"] == expected.mode
    assert saved["output_choice"]["scores"] == pytest.approx(expected.scores)
    assert saved["settings"] == dict(
        preset="default",
        estimator="fused_floor",
        weight_scale="max_one",
        output="auto",
    )
    assert f"G-Blend: output mode: {expected.mode} (accuracy on V:" in (
        capsys.readouterr().out
    )
    # The fused and mean scores are plain accuracies on V.
    assert expected.scores["fused"] == prediction.accuracy(probs["fused"], heldout[1])


def test_paper_preset_keeps_the_fused_output_and_weights_summing_to_one():
    model, train, heldout = synthetic_setup()
    cb = GBlendCallback(
        train, heldout, warmup_epochs=0, super_epoch=1, preset="paper", verbose=0
    )
    model.fit(*train, epochs=3, batch_size=16, callbacks=[cb], verbose=0)
    assert model.output_mode == "fused"
    assert cb.state.output_choice is None
    assert sum(model.get_blend_weights().values()) == pytest.approx(1.0)


def test_choose_mode_cross_fits_the_weighted_score():
    # Heads that are each right on half of V, at random: a weighted mix fit on
    # all of V looks better on V than it is; cross-fitted, it does not win.
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    right, wrong = np.eye(2)[y] * 0.6 + 0.2, np.eye(2)[1 - y] * 0.6 + 0.2
    probs = {
        h: np.where(rng.random((200, 1)) < 0.5, right, wrong)
        for h in ("a", "b", "fused")
    }
    choice = prediction.choose_mode(probs, y)
    in_sample = prediction.accuracy(
        sum(w * probs[h] for h, w in choice.weights.items()), y
    )
    assert choice.scores["weighted"] < in_sample
    best = max(choice.scores.values())
    # Ties go to the fused head, then the mean.
    first = [m for m in prediction.MODES if choice.scores[m] == best][0]
    assert choice.mode == first


def test_choose_mode_prefers_the_fused_head_on_a_tie():
    y = np.arange(8) % 2
    right = np.eye(2)[y] * 0.8 + 0.1
    choice = prediction.choose_mode({"a": right, "fused": right}, y)
    assert choice.scores == {"fused": 1.0, "mean": 1.0, "weighted": 1.0}
    assert choice.mode == "fused"


def test_choose_mode_refuses_a_tiny_v():
    y = np.array([0, 1, 0])
    probs = {"a": np.eye(2)[y], "fused": np.eye(2)[y]}
    with pytest.raises(
        ValueError,
        match="at least 4 held-out examples to choose an output mode. Received 3",
    ):
        prediction.choose_mode(probs, y)


def test_state_files_without_the_new_fields_read_as_before(tmp_path):
    old = {
        "version": 2,
        "head_names": ["a", "fused"],
        "initial_weights": [0.5, 0.5],
        "measurements": [],
        "estimates": [],
    }
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    loaded = state_file.load(str(path))
    assert loaded.settings is None and loaded.output_choice is None
    assert loaded.to_dict() == old  # Written back unchanged.
