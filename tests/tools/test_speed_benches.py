"""Smoke tests of issue 19's speed benchmarks: each runs at its --quick size and
writes its table; the timings themselves are not checked (the machine is shared),
but the pieces that turn timings into ratios are, on made-up numbers.
"""

import json
import math
import os
import wave

import numpy as np
import pytest

from tests.conftest import REPO_ROOT
from tools import bench_gpu, bench_overhead, bench_pipelines, peer_torch

TORCH_PYTHON = os.path.join(REPO_ROOT, ".venv-torch", "bin", "python")


def _finite_summary(entry):
    assert set(entry) >= {"median", "min", "max", "values"}
    assert entry["min"] <= entry["median"] <= entry["max"]
    assert all(math.isfinite(v) and v > 0 for v in entry["values"])


def test_interleaved_flips_the_order_every_round():
    order = []
    seconds = bench_overhead.interleaved(
        {"a": lambda: order.append("a"), "b": lambda: order.append("b")}, 3
    )
    assert order == ["a", "b", "b", "a", "a", "b"]
    assert [len(v) for v in seconds.values()] == [3, 3]


def test_ratios_are_per_round_and_the_backend_table_is_against_tensorflow():
    ratio = bench_overhead.ratios([2.0, 3.0, 9.0], [1.0, 2.0, 3.0])
    assert ratio["values"] == [2.0, 1.5, 3.0]
    assert (ratio["median"], ratio["min"], ratio["max"]) == (2.0, 1.5, 3.0)

    def result(backend, plain_ms):
        one = bench_overhead.summary([1.0])
        return {
            "backend": backend,
            "settings": {},
            "step": {"plain_ms": bench_overhead.summary([plain_ms])}
            | {"gblend_over_plain": one},
            "run": {"in_situ_over_naive": one, "floor_over_naive": one},
        }

    text = bench_overhead.combined_table(
        [result("jax", 30.0), result("tensorflow", 10.0)]
    )
    rows = {line.split("|")[1].strip(): line for line in text.splitlines()[2:]}
    assert rows["jax"].split("|")[3].strip() == "3.00"
    assert rows["tensorflow"].split("|")[3].strip() == "1.00"


def test_bench_overhead_quick_writes_its_table(tmp_path):
    output, numbers = tmp_path / "overhead.md", tmp_path / "overhead.json"
    bench_overhead.main(["--quick", f"--output={output}", f"--json={numbers}"])
    text = output.read_text()
    for row in ("ms / step", "in-situ run / naive run", "floor / naive run"):
        assert row in text
    result = json.loads(numbers.read_text())
    assert result["backend"] == "tensorflow"
    assert result["examples"] == {"train": 128, "T'": 64, "V": 64}
    for entry in (
        result["step"]["plain_ms"],
        result["step"]["gblend_ms"],
        result["run"]["in_situ_over_naive"],
        result["run"]["floor_over_naive"],
    ):
        _finite_summary(entry)
    assert result["run"]["measurements"] >= 1  # the floor counts real passes
    assert result["run"]["floor_over_naive"]["median"] > 1.0


def test_peer_weights_follow_dg_over_do_squared():
    before = (np.array([1.0, 1.0, 1.0]), np.array([1.2, 1.2, 1.2]))
    after = (np.array([0.6, 0.8, 0.7]), np.array([1.0, 1.1, 1.3]))
    d_g = np.array([0.2, 0.1, -0.1])
    d_o = np.array([0.4 - 0.2, 0.3 - 0.2, 0.6 - 0.2])
    raw = np.array([d_g[0] / d_o[0] ** 2, d_g[1] / d_o[1] ** 2, 0.0])
    expected = 0.05 + (1 - 3 * 0.05) * raw / raw.sum()
    np.testing.assert_allclose(peer_torch.peer_weights(before, after), expected)
    nothing = (after[0], before[1] + 0.1)
    assert peer_torch.peer_weights(before, nothing) is None  # no head generalised
    assert peer_torch.measured_epochs(9) == [2, 5, 8]  # GBlendCallback's defaults


@pytest.mark.skipif(
    not os.path.exists(TORCH_PYTHON), reason="needs .venv-torch (make test-torch)"
)
def test_peer_torch_quick_writes_its_table(tmp_path):
    import subprocess

    output, numbers = tmp_path / "peer.md", tmp_path / "peer.json"
    env = dict(os.environ, KERAS_BACKEND="torch", PYTHONPATH=str(REPO_ROOT))
    subprocess.run(
        [TORCH_PYTHON, "-m", "tools.peer_torch", "--quick"]
        + [f"--output={output}", f"--json={numbers}"],
        cwd=REPO_ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert "| epoch of a G-Blend run, s |" in output.read_text()
    result = json.loads(numbers.read_text())
    for side in ("peer", "keras_gblend"):
        _finite_summary(result["epoch_s"][side])
        _finite_summary(result["estimate_ms"][side])


def test_synthetic_wavs_decode_to_the_expected_features(tmp_path):
    from keras_gblend.data import audio

    (path,) = bench_pipelines.write_synthetic_wavs(tmp_path, [3])
    with wave.open(path) as handle:
        assert (handle.getframerate(), handle.getnframes()) == (8000, 8000)
    features = audio.wav_file_to_log_mel(path).numpy()
    assert features.shape == (49, 32)
    assert np.all(np.isfinite(features))


@pytest.mark.slow  # One step in a subprocess: ~25 s idle, ~80 s at load 8.
def test_bench_gpu_quick_runs_a_step_and_reports_it(tmp_path):
    output = tmp_path / "report.md"
    text = bench_gpu.main(
        [
            "--quick",
            "--only=pipelines",
            f"--out_dir={tmp_path / 'runs'}",
            f"--output={output}",
        ]
    )
    assert output.read_text() == text
    assert "## pipelines (bench_pipelines" in text
    assert "| `files_dataset(cache=False)`: decoded every epoch |" in text
    result = json.loads((tmp_path / "runs" / "pipelines.json").read_text())
    assert result["examples"] == 64
    _finite_summary(result["files_later_over_in_memory"])
