"""Tests of choosing the learning rate on V (`keras_gblend.training.tuning`)."""

import keras
import numpy as np
import pytest

from keras_gblend import GBlendCallback, build_gblend_model, data
from keras_gblend.model import encoders
from keras_gblend.training import tuning
from tests.helpers import synthetic_setup


def _builder(train, built):
    def build(rate):
        keras.utils.set_random_seed(0)  # The same initial model for every rate.
        branches = {
            m: encoders.mlp_encoder(x.shape[1:], units=(8,), name=f"{m}_encoder")
            for m, x in train[0].items()
        }
        model = build_gblend_model(branches, num_classes=4)
        model.compile(
            optimizer=keras.optimizers.SGD(rate, momentum=0.9),
            loss="sparse_categorical_crossentropy",
        )
        built.append(model)
        return model

    return build


@pytest.mark.filterwarnings("ignore::keras_gblend.GBlendWarning")
def test_chooses_the_rate_whose_output_is_best_on_v(capsys):
    _, train, heldout = synthetic_setup()
    built, callbacks = [], []

    def fresh_callbacks():
        callbacks.append(GBlendCallback(data.sample_subset(train, 24), heldout))
        return callbacks[-1:]

    chosen = tuning.select_learning_rate(
        _builder(train, built), train, heldout, epochs=10, rates=(1e-7, 0.05),
        callbacks=fresh_callbacks,
    )  # fmt: skip
    # A rate of 1e-7 leaves the model at chance; 0.05 learns.
    assert chosen.learning_rate == 0.05
    assert chosen.scores[0.05] > chosen.scores[1e-7] + 0.1
    # Each score is the accuracy of that run's own output on V.
    x, y = heldout
    probs = built[1].predict_output(x)
    assert chosen.scores[0.05] == pytest.approx(np.mean(probs.argmax(-1) == y))
    assert len(built) == 2 and len(callbacks) == 2 and callbacks[0] is not callbacks[1]
    assert all(c.estimates for c in callbacks)  # G-Blend ran in every run.
    assert "learning rate 0.05: accuracy on V" in capsys.readouterr().out


def test_ties_go_to_the_smaller_rate():
    _, train, heldout = synthetic_setup()
    chosen = tuning.select_learning_rate(
        _builder(train, []), train, heldout, epochs=1, rates=(2e-9, 1e-9), verbose=0
    )
    assert chosen.scores[1e-9] == chosen.scores[2e-9]  # Neither rate moves the model.
    assert chosen.learning_rate == 1e-9


def test_bad_arguments_fail_before_any_run():
    _, train, heldout = synthetic_setup()
    with pytest.raises(ValueError, match="`rates` must be one or more positive"):
        tuning.select_learning_rate(lambda r: None, train, heldout, epochs=1, rates=())
    with pytest.raises(ValueError, match="`build` must return a compiled GBlendModel"):
        tuning.select_learning_rate(
            lambda r: keras.Sequential([keras.Input((2,))]), train, heldout, epochs=1
        )
