"""Tests for keras_gblend.model.prediction and the model's output modes."""

import itertools

import numpy as np
import pytest

from keras_gblend.model import prediction
from tests.helpers import toy_data, toy_model

HEADS = ("a", "b", "c", "fused")


def _probs(num=6, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(len(HEADS), num, classes)) * 2
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    return dict(zip(HEADS, p))


def _expected(probs, mode, weights=None, heads=HEADS):
    """The combination, written independently of `prediction.combine`."""
    p = np.stack([probs[h] for h in heads])
    if mode == "fused":
        return probs["fused"]
    if mode == "mean":
        return p.mean(0)
    if mode == "weighted":
        w = np.array([weights[h] for h in heads])
        return np.tensordot(w / w.sum(), p, axes=1)
    raise AssertionError(mode)


WEIGHTS = {"a": 0.1, "b": 0.2, "c": 0.3, "fused": 0.4}


@pytest.mark.parametrize("mode", prediction.MODES)
def test_combine_matches_hand_computed_combination(mode):
    probs = _probs()
    got = np.asarray(prediction.combine(probs, mode, WEIGHTS))
    np.testing.assert_allclose(got, _expected(probs, mode, WEIGHTS), atol=1e-6)
    np.testing.assert_allclose(got.sum(-1), 1.0, atol=1e-6)


@pytest.mark.parametrize("mode", prediction.MODES)
def test_combine_uses_only_available_heads_per_example(mode):
    probs = _probs()
    # Example 0: "c" missing, so "c" and "fused" are unavailable; 1: "a" only.
    avail = {
        "a": np.ones(6),
        "b": np.array([1, 0, 1, 1, 1, 1.0]),
        "c": np.array([0, 0, 1, 1, 1, 1.0]),
        "fused": np.array([0, 0, 1, 1, 1, 1.0]),
    }
    got = np.asarray(prediction.combine(probs, mode, WEIGHTS, available=avail))
    np.testing.assert_allclose(got[2:], _expected(probs, mode, WEIGHTS)[2:], atol=1e-6)
    # The fused head is gone for 0 and 1: mode "fused" averages the rest.
    sub_mode = "mean" if mode == "fused" else mode
    row0 = {h: probs[h][:1] for h in ("a", "b")}
    np.testing.assert_allclose(
        got[:1], _expected(row0, sub_mode, WEIGHTS, ("a", "b")), atol=1e-6
    )
    np.testing.assert_allclose(got[1], probs["a"][1], atol=1e-6)


def test_weighted_mode_with_no_weight_on_the_available_heads_averages_them():
    probs = _probs()
    only_fused = {"a": 0.0, "b": 0.0, "c": 0.0, "fused": 1.0}
    avail = {"fused": np.zeros(6)}
    got = prediction.combine(probs, "weighted", only_fused, available=avail)
    expected = (probs["a"] + probs["b"] + probs["c"]) / 3
    np.testing.assert_allclose(np.asarray(got), expected, atol=1e-6)


def _log_loss(probs, y, w):
    mix = sum(w[h] * probs[h][np.arange(len(y)), y] for h in probs)
    return -np.mean(np.log(mix))


def test_fit_combination_weights_is_the_simplex_minimum_of_heldout_log_loss():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, size=200)
    probs = {
        h: 0.6 * np.eye(4)[np.where(rng.random(200) < acc, y, (y + 1) % 4)]
        + 0.1 * rng.dirichlet(np.ones(4), size=200)
        + 0.075
        for h, acc in zip(("a", "b", "fused"), (0.8, 0.5, 0.7))
    }
    fitted = prediction.fit_combination_weights(probs, y)
    assert sum(fitted.values()) == pytest.approx(1.0)
    assert min(fitted.values()) >= 0
    # A grid search over the simplex finds nothing better.
    grid = np.linspace(0, 1, 51)
    best = min(
        _log_loss(probs, y, {"a": u, "b": v, "fused": 1 - u - v})
        for u, v in itertools.product(grid, grid)
        if u + v <= 1 + 1e-12
    )
    assert _log_loss(probs, y, fitted) <= best + 1e-9
    assert _log_loss(probs, y, fitted) < _log_loss(
        probs, y, dict.fromkeys(probs, 1 / 3)
    )
    # Deterministic, and one-hot labels give the same weights.
    assert prediction.fit_combination_weights(probs, np.eye(4)[y]) == fitted


def test_fit_combination_weights_errors_name_argument_expected_received():
    probs = _probs(num=5)
    with pytest.raises(ValueError, match=r"`labels` must have shape \(5,\).*\(4,\)"):
        prediction.fit_combination_weights(probs, np.zeros(4, int))
    with pytest.raises(ValueError, match="`probs` must hold .* Received"):
        prediction.fit_combination_weights({"a": np.ones((5, 2)), "b": np.ones(5)}, [0])
    with pytest.raises(ValueError, match="`probs` must be a non-empty mapping"):
        prediction.fit_combination_weights({}, [0])


DIMS = {"a": 3, "b": 4, "c": 2}


def _model(seed=0):
    """Three modalities, 5-unit tanh branches, 4 classes; not compiled."""
    return toy_model(seed, None, None, dims=DIMS, num_classes=4, units=5)


def _x(num=7, seed=1):
    return {m: v * 3 for m, v in toy_data(num, seed, dims=DIMS)[0].items()}


@pytest.mark.parametrize("mode", prediction.MODES)
def test_predict_output_is_the_mode_of_the_heads(mode):
    model = _model()
    model.set_output_mode("fused", WEIGHTS)
    x = _x()
    heads = model.predict(x, verbose=0)
    got = model.predict_output(x, mode=mode)
    np.testing.assert_allclose(got, _expected(heads, mode, WEIGHTS), atol=1e-6)
    model.set_output_mode(mode)
    np.testing.assert_allclose(model.predict_output(x), got, atol=1e-7)


@pytest.mark.parametrize("mode", prediction.MODES)
def test_absent_modality_uses_the_heads_that_can_be_computed(mode):
    model = _model()
    model.set_output_mode(mode, WEIGHTS)
    x = _x()
    heads = model.predict(x, verbose=0)
    without_c = model.predict_output({"a": x["a"], "b": x["b"]})
    sub_mode = "mean" if mode == "fused" else mode
    np.testing.assert_allclose(
        without_c, _expected(heads, sub_mode, WEIGHTS, ("a", "b")), atol=1e-6
    )
    np.testing.assert_allclose(
        model.predict_output({"b": x["b"]}), heads["b"], atol=1e-6
    )


def test_missing_mask_per_example_equals_absent_modality_rows():
    model = _model()
    model.set_output_mode("weighted", WEIGHTS)
    x = _x()
    mask = np.array([True, False, True, False, False, False, True])
    got = model.predict_output(x, missing={"c": mask})
    absent = model.predict_output({"a": x["a"], "b": x["b"]})
    full = model.predict_output(x)
    np.testing.assert_allclose(got[mask], absent[mask], atol=1e-6)
    np.testing.assert_allclose(got[~mask], full[~mask], atol=1e-6)
    # The masked inputs' values are ignored.
    noisy = dict(x, c=np.where(mask[:, None], 1e3, x["c"]).astype("float32"))
    np.testing.assert_allclose(
        model.predict_output(noisy, missing={"c": mask}), got, atol=1e-6
    )


@pytest.mark.parametrize("dtype", ["int64", "int32", "float32"])
def test_a_zero_one_missing_mask_is_read_as_a_boolean_mask(dtype):
    model = _model()
    x = _x()
    mask = np.array([True, False, True, False, False, False, True])
    np.testing.assert_allclose(
        model.predict_output(x, missing={"c": mask.astype(dtype)}),
        model.predict_output(x, missing={"c": mask}),
        atol=1e-7,
    )


def test_predict_output_accepts_verbose_like_keras_predict(capsys):
    model = _model()
    x = _x()
    silent = model.predict_output(x, verbose=0)
    assert capsys.readouterr().out == ""
    np.testing.assert_allclose(model.predict_output(x, verbose=1), silent)
    assert "step" in capsys.readouterr().out  # Keras's progress bar.


def test_evaluate_outputs_reports_every_head_and_mode():
    model = _model()
    x = _x(num=40)
    y = np.random.default_rng(0).integers(0, 4, size=40)
    heads = model.predict(x, verbose=0)
    report = model.evaluate_outputs(x, y)
    assert set(report["modes"]) == {"fused", "mean"}  # nothing fit yet
    for h in model.head_names:
        assert report["heads"][h] == np.mean(np.argmax(heads[h], -1) == y)
    model.set_output_mode("fused", WEIGHTS)
    report = model.evaluate_outputs(x, y)
    for mode in prediction.MODES:
        expected = _expected(heads, mode, WEIGHTS)
        assert report["modes"][mode] == np.mean(np.argmax(expected, -1) == y)
    without_a = model.evaluate_outputs({"b": x["b"], "c": x["c"]}, y)
    assert set(without_a["heads"]) == {"b", "c"}


def test_fitted_weights_see_only_the_heldout_set(monkeypatch):
    model = _model()
    heldout = (_x(num=30, seed=5), np.arange(30) % 4)
    calls = []
    real = prediction.fit_combination_weights

    def spy(probs, labels, **kwargs):
        calls.append((probs, np.asarray(labels)))
        return real(probs, labels, **kwargs)

    monkeypatch.setattr(prediction, "fit_combination_weights", spy)
    fitted = model.fit_output_weights(heldout)
    assert len(calls) == 1
    probs, labels = calls[0]
    heads = model.predict(heldout[0], verbose=0)
    for h in model.head_names:
        np.testing.assert_array_equal(probs[h], heads[h])
    np.testing.assert_array_equal(labels, heldout[1])
    # Predicting and evaluating on test data never refits, whatever the data.
    model.set_output_mode("weighted")
    for seed in (6, 7):
        test_x = _x(num=11, seed=seed)
        model.evaluate_outputs(test_x, np.zeros(11, int))
        model.predict_output(test_x)
    assert len(calls) == 1 and model.output_weights == fitted


def test_bad_inputs_give_clear_errors():
    model = _model()
    x = _x()
    with pytest.raises(ValueError, match=r"`x` keys must be .*unknown keys \['d'\]"):
        model.predict_output(dict(x, d=x["a"]))
    with pytest.raises(ValueError, match="at least one modality .* Received keys"):
        model.predict_output({})
    with pytest.raises(ValueError, match=r"all modalities missing at indices \[2\]"):
        masks = {m: np.arange(7) == 2 for m in "abc"}
        model.predict_output(x, missing=masks)
    with pytest.raises(ValueError, match=r"`missing\['a'\]` must be a boolean .*int64"):
        model.predict_output(x, missing={"a": np.full(7, 2)})
    with pytest.raises(ValueError, match=r"`missing` keys must be .*\['z'\]"):
        model.predict_output(x, missing={"z": np.zeros(7, bool)})
    with pytest.raises(ValueError, match=r"`mode` must be one of .*'median'"):
        model.predict_output(x, mode="median")
    with pytest.raises(ValueError, match="needs combination weights .* Received no"):
        model.set_output_mode("weighted")
    with pytest.raises(ValueError, match="must have exactly the keys"):
        model.set_output_mode("weighted", {"a": 1.0})
    with pytest.raises(ValueError, match="`heldout` x must be a dict with every"):
        model.fit_output_weights(({"a": x["a"]}, np.zeros(7)))
    with pytest.raises(ValueError, match="`x` must be a dict .* Received ndarray"):
        model.predict_output(x["a"])
