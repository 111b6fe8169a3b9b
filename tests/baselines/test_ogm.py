"""Tests for OGM-GE (keras_gblend.baselines): coefficients, modulation, noise, fit."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_gblend import data
from keras_gblend.baselines.ogm import (
    OGMGEModel,
    OGMSchedule,
    ogm_coefficients,
    ogm_scores,
)
from keras_gblend.model import encoders


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _numpy_coefficients(scores, alpha):
    scores = np.asarray(scores, np.float64)
    out = []
    for k, s in enumerate(scores):
        others = np.delete(scores, k).mean()
        ratio = s / others
        out.append(1 - np.tanh(alpha * ratio) if ratio > 1 else 1.0)
    return np.array(out)


@pytest.mark.parametrize(
    "scores, alpha",
    [
        ([30.0, 10.0], 0.1),
        ([10.0, 30.0], 0.8),
        ([5.0, 5.0], 0.5),
        ([8.0, 6.0, 1.0], 0.3),
    ],
)
def test_coefficients_match_the_closed_form(scores, alpha):
    got = keras.ops.convert_to_numpy(ogm_coefficients(np.array(scores), alpha))
    np.testing.assert_allclose(got, _numpy_coefficients(scores, alpha), rtol=1e-5)


def test_two_modalities_follow_eq_10_of_the_paper():
    # rho_a = s_a / s_v = 3: k_a = 1 - tanh(3 alpha); the weaker one keeps 1.
    got = keras.ops.convert_to_numpy(ogm_coefficients(np.array([6.0, 2.0]), 0.2))
    np.testing.assert_allclose(got, [1 - np.tanh(0.6), 1.0], rtol=1e-6)
    # Equal scores: ratio 1 is not > 1, so nothing is modulated.
    tied = keras.ops.convert_to_numpy(ogm_coefficients(np.array([4.0, 4.0]), 0.2))
    np.testing.assert_array_equal(tied, [1.0, 1.0])


def test_scores_match_the_closed_form():
    rng = np.random.default_rng(0)
    features = [
        rng.normal(size=(6, 3)),
        rng.normal(size=(6, 2)),
        rng.normal(size=(6, 4)),
    ]
    kernel, bias = rng.normal(size=(9, 5)), rng.normal(size=5)
    labels = rng.integers(0, 5, size=6)
    got = ogm_scores(
        [f.astype("float32") for f in features],
        kernel.astype("float32"),
        bias.astype("float32"),
        labels,
    )
    expected, start = [], 0
    for f in features:
        probs = _softmax(f @ kernel[start : start + f.shape[1]] + bias / 3)
        expected.append(probs[np.arange(6), labels].sum())
        start += f.shape[1]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(got), expected, rtol=1e-5)


def _toy_model(ge=False):
    """Two linear encoders with fixed weights; modality "a" is the informative one."""
    branches = {}
    for m, scale in (("a", 3.0), ("b", 0.1)):
        branches[m] = keras.Sequential(
            [
                keras.Input((2,)),
                keras.layers.Dense(
                    2,
                    kernel_initializer=keras.initializers.Constant(
                        np.array([[scale, -scale], [0.5, 0.5]])
                    ),
                ),
            ],
            name=f"{m}_encoder",
        )
    model = OGMGEModel(branches, num_classes=2, alpha=0.5, ge=ge, seed=0)
    x = {
        "a": np.array([[1.0, 0.0], [-1.0, 0.0], [1.0, 1.0], [-1.0, 1.0]], "float32"),
        "b": np.array([[1.0, 0.0], [1.0, 0.0], [-1.0, 1.0], [1.0, 1.0]], "float32"),
    }
    y = np.array([0, 1, 0, 1])
    model(x)
    model.fused_head.kernel.assign(np.eye(4, 2, dtype="float32") + np.eye(4, 2, -2))
    return model, x, y


def _gradients(model, x, y):
    with tf.GradientTape() as tape:
        y_pred = model(x, training=True)
        loss = model.compute_loss(x, y, y_pred, training=True)
    return [g.numpy() for g in tape.gradient(loss, model.trainable_variables)]


def test_modulation_scales_only_the_dominant_encoder_gradient():
    model, x, y = _toy_model()
    model.modulation_on.assign(0.0)
    plain = _gradients(model, x, y)
    model.modulation_on.assign(1.0)
    modulated = _gradients(model, x, y)

    # The coefficient the paper gives for these features and weights.
    features = [model.branches[m](x[m]).numpy() for m in ("a", "b")]
    kernel, bias = model.fused_head.kernel.numpy(), model.fused_head.bias.numpy()
    scores = [
        _softmax(f @ kernel[2 * k : 2 * k + 2] + bias / 2)[np.arange(4), y].sum()
        for k, f in enumerate(features)
    ]
    assert scores[0] > scores[1]
    expected = _numpy_coefficients(scores, 0.5)
    assert expected[0] < 0.9 and expected[1] == 1.0

    owner = {
        id(v): m for m in ("a", "b") for v in model.branches[m].trainable_variables
    }
    for v, g0, g1 in zip(model.trainable_variables, plain, modulated):
        factor = {"a": expected[0], "b": 1.0}.get(owner.get(id(v)), 1.0)
        assert np.abs(g0).max() > 0
        np.testing.assert_allclose(g1, factor * g0, rtol=1e-4, atol=1e-7)


def test_ge_noise_has_the_unmodulated_gradient_std_on_encoders_only():
    model, x, y = _toy_model(ge=True)
    model.modulation_on.assign(1.0)
    with tf.GradientTape() as tape:
        loss = model.compute_loss(x, y, model(x, training=True), training=True)
    variables = model.trainable_variables
    gradients = tape.gradient(loss, variables)
    coefficient = float(model._step["coefficients"][0])
    encoder_a = model.branches["a"].trainable_variables[0]
    # Many draws of the noise for the 2 x 2 kernel of encoder "a".
    noise = np.stack(
        [
            (model._enhance(gradients, variables)[0] - gradients[0]).numpy()
            for _ in range(150)
        ]
    )
    assert variables[0] is encoder_a
    expected_std = np.std(gradients[0].numpy()) / coefficient
    assert abs(noise.std() / expected_std - 1) < 0.1
    head = [i for i, v in enumerate(variables) if v is model.fused_head.kernel][0]
    enhanced = model._enhance(gradients, variables)
    np.testing.assert_array_equal(enhanced[head].numpy(), gradients[head].numpy())
    model.modulation_on.assign(0.0)
    off = model._enhance(gradients, variables)
    np.testing.assert_array_equal(off[0].numpy(), gradients[0].numpy())


def _synthetic_model(ge, modulation_epochs=None):
    ds = data.make_synthetic(num_train=800, num_test=400, dim_b=64, sep_b=2.5, seed=0)
    branches = {
        m: encoders.mlp_encoder(x.shape[1:], units=(16,), name=f"{m}_encoder")
        for m, x in ds.train[0].items()
    }
    model = OGMGEModel(
        branches,
        ds.num_classes,
        alpha=0.5,
        ge=ge,
        modulation_epochs=modulation_epochs,
        seed=0,
    )
    model.compile(
        optimizer=keras.optimizers.SGD(0.05, momentum=0.9), metrics=["accuracy"]
    )
    return model, ds


@pytest.mark.parametrize("ge", [True, False])
def test_fit_learns_on_synthetic_data(ge):
    model, ds = _synthetic_model(ge)
    history = model.fit(*ds.train, epochs=8, batch_size=64, verbose=0).history
    assert history["loss"][-1] < 0.7 * history["loss"][0]
    probs = model.predict(ds.test[0], verbose=0)
    accuracy = np.mean(np.argmax(probs, -1) == ds.test[1])
    assert accuracy > 0.25 + 0.25  # 4 classes: chance is 0.25
    # Modality "b" (1024-d, memorised fast) dominates and is slowed down.
    assert min(history["coeff_b"]) < 1.0


def test_schedule_turns_modulation_off_outside_its_epochs():
    model, ds = _synthetic_model(ge=True, modulation_epochs=(0, 0))
    history = model.fit(
        *ds.train, epochs=3, batch_size=64, callbacks=[OGMSchedule()], verbose=0
    ).history
    assert min(history["coeff_b"][:1]) < 1.0
    assert history["coeff_a"][1:] == [1.0, 1.0] and history["coeff_b"][1:] == [1.0, 1.0]
    assert float(model.modulation_on.numpy()) == 0.0


def test_invalid_arguments_raise():
    model, _, _ = _toy_model()
    with pytest.raises(ValueError, match="`loss` must be None"):
        model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match="`alpha` must be > 0"):
        OGMGEModel(model.branches, 2, alpha=0.0)
    with pytest.raises(ValueError, match="`branches` must be a dict"):
        OGMGEModel(list(model.branches.values()), 2)
