"""The regime family's knob and the regime map's program (`regime_study`)."""

import os
import subprocess
import sys

import numpy as np
import pytest

from experiments import common, methods, protocol, regime_study
from tests.conftest import REPO_ROOT


def _code_only_accuracy(signal):
    """Held-out accuracy of the code modality's uni-modal model (one fold)."""
    pool = protocol.pooled_regime(signal=signal)
    task = protocol.fold_task(pool, [0, 1], "regime", (protocol.REGIME_VIEW,))
    config = common.Config(epochs=3, subset_size=256)
    result = methods.run_method("unimodal", task, config, seed=0)
    return {r["method"]: r["accuracy"] for r in result}["unimodal_code"]


def test_the_knob_makes_the_code_modality_weaker_down_to_chance():
    accuracies = [_code_only_accuracy(s) for s in (4.0, 2.0, 0.0)]
    assert accuracies[0] > accuracies[1] + 0.1 > accuracies[2] + 0.1, accuracies
    assert abs(accuracies[2] - 0.1) < 0.05  # 10 balanced classes: chance


def test_the_pool_pairs_the_real_view_with_the_code():
    x, y, groups = protocol.pooled_regime(signal=1.0)
    assert set(x) == {protocol.REGIME_VIEW, "code"}
    assert x["code"].shape == (len(y), 1024) and len(set(groups.tolist())) == 6
    np.testing.assert_array_equal(
        x[protocol.REGIME_VIEW], protocol.pooled_mfeat()[0][protocol.REGIME_VIEW]
    )


def _records(diffs):
    """Records where `gblend_online` beats `uniform` by `diffs` per run."""
    out = []
    for i, d in enumerate(diffs):
        for method, acc in (("uniform", 80.0), ("gblend_online", 80.0 + d)):
            out.append(dict(fold=i, seed=0, method=method, lr=0.03, accuracy=acc))
    return out


def test_the_answer_needs_two_points_and_a_ci_above_zero():
    resolved = regime_study.answer({0.0: _records([2.5, 3.0, 2.8])})
    assert "gblend_online - uniform +2.8" in resolved
    unresolved = regime_study.answer({0.0: _records([6.0, -1.0, 2.0])})
    assert "above 0: none" in unresolved
    single = regime_study.answer({0.0: _records([5.0])})  # one pair: no interval
    assert "above 0: none" in single


@pytest.mark.slow
def test_the_smoke_preset_runs_end_to_end(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.regime_study",
            "--preset=smoke",
            f"--output_dir={tmp_path}",
            f"--plot={tmp_path / 'map.png'}",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "### The map" in result.stdout and (tmp_path / "map.png").exists()
    assert (tmp_path / "signal_0.jsonl").exists()
