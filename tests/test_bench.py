"""Smoke test of `tools/bench.py --quick`: it runs and writes well-formed JSON.

Timings are not checked (the machine is shared); only the report's structure.
"""

import json
import os
import subprocess
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RATIO_KEYS = {"ratio", "values", "median", "min", "max"}


def _check_ratio(entry, target=None):
    assert RATIO_KEYS <= set(entry), sorted(entry)
    assert entry["min"] <= entry["median"] <= entry["max"]
    assert all(v > 0 for v in entry["values"])
    if target is not None:
        assert entry["target"] == target and isinstance(entry["met"], bool)


@pytest.mark.slow
def test_quick_bench_writes_the_report(tmp_path):
    output = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "tools/bench.py", "--quick", f"--output={output}"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| gblend / plain |" in result.stdout
    report = json.loads(output.read_text())
    assert report["quick"] is True
    assert report["machine"]["cpu_count"] >= 1
    assert report["config"]["epochs"] == 2
    results = report["results"]
    assert set(results) == {"step", "online", "estimation", "audio", "memory"}

    _check_ratio(results["step"], target=1.02)
    assert set(results["step"]["variants"]) == {"gblend", "plain"}
    _check_ratio(results["online"], target=1.10)
    _check_ratio(results["online"]["online_ds"], target=1.10)
    assert set(results["online"]["measuring_seconds"]) == {"online", "online_ds"}
    for name in ("offline_estimate", "offline", "exact"):
        _check_ratio(results["estimation"][name])
    audio = results["audio"]
    if "skipped" not in audio:  # Needs the FSDD recordings in ../shared/data.
        _check_ratio(audio, target=1.05)
        _check_ratio(audio["on_the_fly_fast"], target=1.05)
    memory = results["memory"]["variants"]
    assert set(memory) >= {"baseline", "naive", "online", "offline", "exact"}
    for name, entry in memory.items():
        assert "error" not in entry, (name, entry)
        assert "skipped" in entry or entry["peak_rss_mib"] > 0
