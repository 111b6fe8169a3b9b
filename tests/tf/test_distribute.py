"""Tests for keras_gblend.tf.distribute: strategies, compatibility, mirrored training.

Training under `MirroredStrategy` needs two logical CPU devices, which must be
configured before TensorFlow initialises, so it runs in a subprocess
(`tests/scripts/mirrored_train.py`).
"""

from unittest import mock

import numpy as np
import pytest
import tensorflow as tf

from keras_gblend.tf import distribute
from tests.scripts import runner

# Measured on 2 CPU cores (Keras 3.15.1, TF 2.21.0, op determinism on): mirrored
# over two logical CPUs vs one device, 4 epochs with in-situ G-Blend, every
# batch split evenly: max |weight difference| 4.2e-6 to 5.6e-6, max |blend-weight
# difference| 5.1e-6 to 5.6e-6, relative difference of the total loss <= 1.0e-6
# (two data versions). The tolerances leave 20-50x room for other CPUs.
WEIGHT_ATOL = 1e-4
BLEND_ATOL = 2e-4
LOSS_RTOL = 1e-4


@pytest.fixture(autouse=True)
def no_fix_leaks():
    """`get_strategy` applies the Keras fixes; undo them after each test."""
    applied = distribute.fixes_applied()
    yield
    if not applied:
        distribute.remove_fixes()


def test_default_strategy_has_one_replica():
    strategy = distribute.get_strategy("default")
    assert strategy is tf.distribute.get_strategy()
    assert strategy.num_replicas_in_sync == 1


def test_mirrored_strategy_uses_every_logical_cpu_in_process():
    strategy = distribute.get_strategy("mirrored")
    assert isinstance(strategy, tf.distribute.MirroredStrategy)
    assert strategy.num_replicas_in_sync == len(tf.config.list_logical_devices("CPU"))
    assert distribute.fixes_applied()


@pytest.mark.parametrize("name", ["Mirrored", "tpu", "", None])
def test_get_strategy_rejects_unknown_names(name):
    with pytest.raises(ValueError, match=r"`name` must be one of \['default'"):
        distribute.get_strategy(name)


def test_get_strategy_rejects_devices_without_mirrored():
    with pytest.raises(ValueError, match="`devices` is only used with name='mirrored'"):
        distribute.get_strategy("default", devices=["/cpu:0"])


def _fake_mirrored(num_replicas):
    strategy = mock.Mock(spec=tf.distribute.MirroredStrategy)
    strategy.num_replicas_in_sync = num_replicas
    return strategy


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(jit_compile=True), r"jit_compile=True.*keras/issues/19005"),
        (dict(steps_per_execution=4), r"steps_per_execution.*keras/issues/19246"),
    ],
    ids=["jit_compile", "steps_per_execution"],
)
def test_check_compatibility_rejects_known_broken_mirrored_settings(kwargs, match):
    distribute.apply_fixes()
    with pytest.raises(ValueError, match=match) as info:
        distribute.check_compatibility(_fake_mirrored(2), **kwargs)
    # What, why, where it is tracked, what to do, and what was received.
    message = str(info.value)
    assert "MirroredStrategy with 2 replicas" in message
    assert "Compile with" in message and "Received" in message


@pytest.mark.parametrize(
    "strategy, kwargs",
    [
        (None, dict(jit_compile=True, steps_per_execution=8)),
        (_fake_mirrored(1), dict(jit_compile=True, steps_per_execution=8)),
        (_fake_mirrored(2), dict(jit_compile="auto", steps_per_execution=1)),
        (_fake_mirrored(2), dict(jit_compile=False, steps_per_execution=1)),
    ],
    ids=["default", "one_replica", "auto", "plain"],
)
def test_check_compatibility_accepts_working_settings(strategy, kwargs):
    distribute.apply_fixes()
    strategy = strategy or tf.distribute.get_strategy()
    distribute.check_compatibility(strategy, **kwargs)


@pytest.mark.parametrize("num_replicas", [1, 2])
def test_check_compatibility_warns_only_for_replicas_without_fixes(num_replicas):
    distribute.remove_fixes()
    strategy = _fake_mirrored(num_replicas)
    if num_replicas == 1:
        distribute.check_compatibility(strategy)  # warnings are errors here
    else:
        with pytest.warns(
            UserWarning,
            match=r"MirroredStrategy with 2 replicas.*"
            r"apply_fixes\(\) is not in effect",
        ):
            distribute.check_compatibility(strategy)
    distribute.apply_fixes()
    distribute.check_compatibility(strategy)  # silent with the fixes
    # The check never patches Keras itself.
    distribute.remove_fixes()
    with pytest.warns(UserWarning) if num_replicas > 1 else _no_warning():
        distribute.check_compatibility(strategy)
    assert not distribute.fixes_applied()


def _no_warning():
    import contextlib

    return contextlib.nullcontext()


def _mirrored_train(*modes):
    return runner.run_json(
        [runner.script_path("mirrored_train.py"), "--mode", *modes], timeout=180
    )


@pytest.fixture(scope="module")
def both_then_steps_per_execution():
    """One process (one TensorFlow start-up): one device, then mirrored, then
    the mirrored model compiled with `steps_per_execution=2` (op determinism
    on in all three; `jit` needs it off and runs in its own process)."""
    return _mirrored_train("both", "steps_per_execution")


@pytest.mark.slow  # Over 20 s on 2 cores.
def test_mirrored_training_matches_single_device(both_then_steps_per_execution):
    """Same seed, data and global batch: mirrored == one device, replicas equal."""
    result = both_then_steps_per_execution
    single, mirrored = result["single"], result["mirrored"]
    assert (single["replicas"], mirrored["replicas"]) == (1, 2)
    # The callback's assign reaches both replicas: identical per-replica values.
    for name, values in mirrored["blend_weights_per_replica"].items():
        assert len(values) == 2 and values[0] == values[1], name
        assert values[0] == pytest.approx(mirrored["blend_weights"][name], abs=1e-7)
    assert mirrored["max_replica_difference"] == 0.0
    # The callback did estimate (and moved the weights away from uniform).
    assert [e["status"] for e in mirrored["estimates"]] == ["ok"] * 4
    assert max(abs(w - 1 / 3) for w in mirrored["blend_weights"].values()) > 0.05
    # Mirrored matches one device.
    for a, b in zip(single["weights"], mirrored["weights"]):
        np.testing.assert_allclose(a, b, atol=WEIGHT_ATOL)
    for name, weight in single["blend_weights"].items():
        assert mirrored["blend_weights"][name] == pytest.approx(weight, abs=BLEND_ATOL)
    np.testing.assert_allclose(
        single["history"]["loss"], mirrored["history"]["loss"], rtol=LOSS_RTOL
    )
    # Per-head logs from epoch 1 on (epoch 0's per-head logs also hold the
    # callback's initial measurement, see docs/robustness.md).
    for head in ("a", "b", "fused"):
        np.testing.assert_allclose(
            single["history"][f"{head}_loss"][1:],
            mirrored["history"][f"{head}_loss"][1:],
            rtol=LOSS_RTOL,
        )


@pytest.mark.slow
@pytest.mark.parametrize(
    "mode, upstream_error",
    [
        ("jit", "Trying to access resource"),
        ("steps_per_execution", "You must feed a value for placeholder tensor"),
    ],
)
def test_known_broken_mirrored_settings_still_fail_upstream(
    mode, upstream_error, request
):
    """`check_compatibility` flags them, and Keras's `fit` still fails on them.

    When this test fails because `fit_error` is None, the upstream bug was fixed:
    drop the check from `check_compatibility` for the new versions.
    """
    if mode == "jit":
        result = _mirrored_train("jit")["jit"]
    else:  # Run after the mirrored training, in its process.
        result = request.getfixturevalue("both_then_steps_per_execution")[mode]
    assert result["replicas"] == 2
    assert result["check"] and "github.com/keras-team/keras/issues" in result["check"]
    # GBlendModel.compile refuses the setting up front with the same message.
    assert result["compile_error"] == result["check"]
    assert result["fit_error"] and upstream_error in result["fit_error"]
