"""Tests for `keras_gblend.tf.distribute.apply_fixes`: tf.distribute fixes for Keras.

The upstream-bug tests FAIL when Keras/TensorFlow change: either the bug no
longer reproduces without the fix (drop the fix for those versions) or the
installed versions are not the verified ones (re-verify, then extend
`distribute.VERIFIED_VERSIONS`). Upstream: keras-team/keras#20585,
tensorflow/tensorflow#72388, keras-team/keras#19246.
"""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_gblend import build_gblend_model
from keras_gblend.tf import distribute
from tests.scripts import runner


@pytest.fixture(autouse=True)
def restore_keras():
    """Leaves Keras as the test found it."""
    applied = distribute.fixes_applied()
    yield
    if applied:
        distribute.apply_fixes()
    else:
        distribute.remove_fixes()


@pytest.mark.parametrize(
    "keras_version, tf_version, expected",
    [
        ("3.15.1", "2.21.0", True),
        ("3.15.0", "2.21.3", True),
        ("3.16.0", "2.21.0", False),
        ("3.15.1", "2.22.0", False),
        ("2.15.0", "2.15.0", False),
    ],
)
def test_fix_is_gated_on_verified_versions(keras_version, tf_version, expected):
    assert distribute.fixes_verified(keras_version, tf_version) is expected


def test_installed_versions_are_the_verified_ones():
    """Fails on other versions: re-run the slow tests, then update the gate."""
    assert distribute.fixes_verified(), (keras.__version__, tf.__version__)


def test_apply_is_idempotent_and_remove_restores_keras():
    from keras.src.backend.tensorflow import trainer

    distribute.remove_fixes()
    original = (
        trainer.reduce_per_replica,
        trainer.TensorFlowTrainer._maybe_symbolic_build,
    )
    assert distribute.apply_fixes() is True
    assert distribute.apply_fixes() is True
    assert distribute.fixes_applied()
    assert trainer.reduce_per_replica is not original[0]
    distribute.remove_fixes()
    distribute.remove_fixes()
    assert not distribute.fixes_applied()
    assert (
        trainer.reduce_per_replica,
        trainer.TensorFlowTrainer._maybe_symbolic_build,
    ) == original


def test_unverified_versions_are_not_patched(monkeypatch):
    distribute.remove_fixes()
    monkeypatch.setattr(distribute, "VERIFIED_VERSIONS", (("0.0", "0.0"),))
    with pytest.warns(UserWarning, match="not applied.*keras/issues/20585"):
        assert distribute.apply_fixes() is False
    assert not distribute.fixes_applied()
    assert distribute.apply_fixes(force=True) is True


def test_fix_leaves_single_device_training_unchanged():
    """Without a strategy the patched functions hand over to Keras's own."""
    rng = np.random.default_rng(0)
    x = {"a": rng.normal(size=(12, 3)), "b": rng.normal(size=(12, 2))}
    y = rng.integers(0, 2, size=12)

    def train():
        keras.utils.set_random_seed(3)
        branches = {
            m: keras.Sequential(
                [keras.Input(v.shape[1:]), keras.layers.Dense(2)], name=f"{m}_enc"
            )
            for m, v in x.items()
        }
        model = build_gblend_model(branches, num_classes=2)
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
        history = model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
        return model.get_weights(), history.history["loss"]

    distribute.remove_fixes()
    weights, losses = train()
    distribute.apply_fixes()
    keras.backend.clear_session()
    patched_weights, patched_losses = train()
    assert losses == patched_losses
    for a, b in zip(weights, patched_weights):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "case, upstream_error",
    [
        ("scalar_metrics", "Invalid reduction dimension 0 for input with 0 dimensions"),
        ("uneven_mirrored", "Inputs to operation AddN of type AddN must have the same"),
    ],
)
def test_upstream_bug_reproduces_without_fix_and_fix_works(case, upstream_error):
    result = runner.run_json(
        [runner.script_path("compat_repro.py"), "--case", case], timeout=180
    )
    assert result["without_fix"] and upstream_error in result["without_fix"], (
        "The upstream bug no longer reproduces on "
        f"{result['versions']}: drop the fix for these versions. Got {result}."
    )
    # GBlendModel.compile did not patch Keras; it warned under two replicas.
    assert result["applied_by_compile"] is False
    warned = any("apply_fixes() is not in effect" in w for w in result["warnings"])
    assert warned is (case == "uneven_mirrored"), result["warnings"]
    assert result["applied"] is True
    if case == "scalar_metrics":
        assert set(result["with_fix"]) >= {"loss", "fused_loss", "fused_accuracy"}
        assert all(np.isfinite(v) for v in result["with_fix"].values())
    else:
        mirrored, single = result["with_fix"]["mirrored"], result["with_fix"]["single"]
        # The total loss is weighted by each replica's batch size: exact.
        assert mirrored["loss"] == pytest.approx(single["loss"], rel=1e-6)
        # Keras averages the per-head loss metrics over replicas unweighted, so
        # an uneven batch (13 + 12) shifts them slightly (measured 0.4 %).
        for head in ("a", "b", "fused"):
            key = f"{head}_loss"
            assert mirrored[key] == pytest.approx(single[key], rel=0.02)


def _start_workers(fix):
    ports = runner.free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    script = runner.script_path("multiworker_train.py")
    flag = "--fix" if fix else "--no-fix"
    return [
        runner.start(
            [script, flag],
            env=runner.subprocess_env(
                TF_CONFIG=json.dumps(
                    {"cluster": cluster, "task": {"type": "worker", "index": i}}
                )
            ),
        )
        for i in range(2)
    ]


def _finish_workers(processes, timeout):
    results = []
    try:
        for process in processes:
            code, out, err = runner.communicate(process, timeout)
            assert code is not None, f"worker timed out; stderr:\n{err[-3000:]}"
            results.append((code, runner.last_json(out), err))
    finally:
        for process in processes:
            runner.kill(process)
    return results


@pytest.mark.slow
def test_multi_worker_fit_fails_without_fix():
    """Two real workers on 127.0.0.1: Keras 3.15's `fit` fails (keras#20585)."""
    for code, result, _ in _finish_workers(_start_workers(fix=False), timeout=180):
        assert code == 3 and result["replicas"] == 2
        assert "unsupported type (<class 'dict'>)" in result["error"], result


@pytest.mark.slow
def test_multi_worker_gblend_training_with_fix_matches_one_process():
    """Two workers train G-Blend in sync and match the one-process baseline."""
    workers = _finish_workers(_start_workers(fix=True), timeout=300)
    baseline = runner.run_json(
        [runner.script_path("multiworker_train.py")], timeout=180
    )
    (code0, first, err0), (code1, second, err1) = workers
    assert (code0, code1) == (0, 0), (err0[-2000:], err1[-2000:])
    assert first["replicas"] == second["replicas"] == 2
    assert baseline["replicas"] == 1 and not baseline["multi_worker"]
    # The workers hold identical models.
    assert first["blend_weights"] == second["blend_weights"]
    assert first["weights"] == second["weights"]
    assert [e["status"] for e in first["estimates"]] == ["ok"] * 3
    # ... equal to one process training on the same global batches (measured:
    # 3.5e-6 on the weights, 3.5e-6 on the blend weights).
    for a, b in zip(first["weights"], baseline["weights"]):
        np.testing.assert_allclose(a, b, atol=1e-4)
    for name, weight in baseline["blend_weights"].items():
        assert first["blend_weights"][name] == pytest.approx(weight, abs=2e-4)
    np.testing.assert_allclose(
        first["history"]["loss"], baseline["history"]["loss"], rtol=1e-4
    )
    # `predict` gathers the workers' outputs in the original order.
    np.testing.assert_allclose(
        first["fused_heldout"], baseline["fused_heldout"], atol=1e-5
    )
