"""The fused-head study's rows and the evaluations programs choose by name."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from experiments import (
    common,
    compare,
    crossval,
    defaults_study,
    evaluations,
    methods,
    study_fused,
)
from keras_gblend import FUSED, data
from tests.conftest import REPO_ROOT

TINY = common.Config(epochs=1, warmup_epochs=0, super_epoch=1, subset_size=32)


def _task(names=("a", "b")):
    ds = data.make_synthetic(num_train=96, num_test=32, dim_b=8, seed=0)
    rename = dict(zip(("a", "b"), names))
    x_train, x_test = (
        {rename[m]: v for m, v in x.items()} for x in (ds.train[0], ds.test[0])
    )
    return common.Task(
        "toy", (x_train, ds.train[1]), (x_test, ds.test[1]), None, ds.num_classes
    )


def _built(method, monkeypatch):
    """What `method` hands to `common.fit`: its context, model and callbacks."""
    seen = []
    monkeypatch.setattr(
        common, "fit", lambda ctx, model, callbacks=(), **kw: seen.append(
            (ctx, model, list(callbacks))) or model
    )  # fmt: skip
    list(methods._outcomes(methods.METHODS[method](common.make_context(_task(), TINY))))
    return seen[-1]


# Every row of the study but the comparison's own (naive: the unscaled rate).
SCALES = {"naive": 1.0, "naive_lr_third": 1 / 3, "uniform_heads_dropout": 3.0}
SCALES |= {m: 3.0 for m in methods.METHODS if "_x3" in m or m.startswith("recipe_")}


def test_the_study_rows_are_the_table_rows_after_the_comparisons():
    # The table: `compare`'s rows, the fused-head study's, then issue 17's
    # baseline (the uni-modal ensembles).
    table = list(methods.METHODS)
    assert table[: len(compare.FULL_METHODS)] == compare.FULL_METHODS
    assert table[-1] == "unimodal_ensemble"
    study = table[len(compare.FULL_METHODS) : -1]
    assert set(study) == set(SCALES) - {"naive"}


@pytest.mark.parametrize("method, factor", sorted(SCALES.items()))
def test_a_weight_scale_is_trained_as_the_learning_rate_times_it(
    method, factor, monkeypatch
):
    ctx, model, callbacks = _built(method, monkeypatch)
    rate = float(model.optimizer.learning_rate.numpy())
    assert rate == pytest.approx(TINY.learning_rate * factor, rel=1e-6)
    assert ctx.config.epochs == TINY.epochs  # Only the rate changes.
    online = method.startswith(("gblend", "recipe"))
    assert len(callbacks) == online
    if online:  # The paper's weights, summing to 1: the rate carries the scale.
        assert callbacks[0].weight_scale == "sum_to_one"


def _fused_loss_gradients(model):
    x, y = _task().test
    encoders = [model.get_layer(f"{m}_encoder") for m in model.modalities]
    variables = [v for e in encoders for v in e.trainable_variables]
    with tf.GradientTape() as tape:
        probs = model(x, training=False)[FUSED]
        loss = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(y, probs))
    return variables, tape.gradient(loss, variables)


@pytest.mark.parametrize(
    "method, reaches", [("gblend_x3", True), ("gblend_x3_stop", False)]
)
def test_the_stop_row_cuts_the_fused_head_from_the_branches(
    method, reaches, monkeypatch
):
    _, model, _ = _built(method, monkeypatch)
    variables, grads = _fused_loss_gradients(model)
    assert variables
    moved = [g is not None and float(tf.reduce_max(tf.abs(g))) > 0 for g in grads]
    assert all(moved) if reaches else not any(moved)


class _ReadsOne:
    """A stand-in model whose fused head answers the sign of one input's
    first feature."""

    def __init__(self, modality):
        self.modality = modality

    def predict(self, x, **kwargs):
        positive = x[self.modality][:, 0] > 0
        return {FUSED: np.stack([~positive, positive], -1).astype("float32")}


def test_audio_shuffled_accuracy_permutes_the_audio_only():
    rng = np.random.default_rng(3)
    audio, image = rng.normal(size=(50, 2)), rng.normal(size=(50, 2))
    y = (audio[:, 0] > 0).astype(int)
    task = common.Task("toy", None, ({"audio": audio, "image": image}, y), None, 2)
    ctx = common.Context(task, TINY, 7, None, None, None)
    perm = np.random.default_rng(7).permutation(50)  # The run's seed.
    on_audio = evaluations.Outcome(_ReadsOne("audio"))
    assert evaluations.audio_shuffled_accuracy(on_audio, ctx) == pytest.approx(
        np.mean(y[perm] == y)
    )
    on_image = evaluations.Outcome(_ReadsOne("image"))
    unshuffled = np.mean((image[:, 0] > 0) == y)
    assert evaluations.audio_shuffled_accuracy(on_image, ctx) == pytest.approx(
        unshuffled
    )
    no_audio = common.Task("toy", None, ({"image": image}, y), None, 2)
    ctx = common.Context(no_audio, TINY, 7, None, None, None)
    assert evaluations.audio_shuffled_accuracy(on_image, ctx) is None


@pytest.mark.filterwarnings("ignore:G-Blend at epoch")
@pytest.mark.parametrize("method", ["recipe_paper", "recipe_robust"])
def test_study_rows_record_the_estimates_and_keep_the_fused_share(method):
    config = common.Config(
        epochs=4,
        warmup_epochs=0,
        super_epoch=1,
        subset_size=16,
        encoders="image:mlp+audio:mlp",
    )
    (row,) = methods.run_method(
        method, _task(("image", "audio")), config, evaluations=study_fused.EVALUATIONS
    )
    assert row["weights"]["fused"] >= 1 / 3 - 1e-9
    assert sum(row["weights"].values()) == pytest.approx(1.0)
    history = row["weight_history"]
    assert [e["epoch"] for e in history] == [1, 2, 3, 4]  # One per epoch.
    assert history[-1]["weights"] == pytest.approx(list(row["weights"].values()))
    assert row["audio_shuffled_accuracy"] is not None and "modes" not in row


def test_every_row_a_program_chooses_is_a_row_of_the_one_table():
    chosen = {
        "compare": [m for p in compare.PRESETS.values() for m in p["methods"]],
        "crossval": [m for p in crossval.PRESETS.values() for m in p["methods"]],
        "defaults_study": defaults_study.ROWS,
        "study_fused": study_fused.ROWS,
    }
    for program, names in chosen.items():
        assert set(names) <= set(methods.METHODS), program
    # Every function of the table is a different method under one name.
    assert len({id(f) for f in methods.METHODS.values()}) == len(methods.METHODS)


def test_importing_the_package_changes_nothing():
    code = (
        "import os, sys; import experiments; "
        "print(os.environ.get('TF_CPP_MIN_LOG_LEVEL'), 'tensorflow' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["2", "False"]
