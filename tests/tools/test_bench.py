"""`tools.bench`: it trains with the experiments' methods and writes its report.

Timings are not checked (the machine is shared); only the report's structure.
"""

import json
import os
import statistics
import subprocess
import sys

import pytest
import tensorflow as tf

from experiments import common, evaluations, methods
from keras_gblend import data
from tests.conftest import REPO_ROOT
from tools import bench, bench_audio

RATIO_KEYS = {"ratio", "values", "median", "min", "max"}


@pytest.mark.parametrize(
    "kind, method", [("naive", "naive"), ("online_ds", "gblend_online")]
)
def test_bench_trains_with_the_experiments_own_methods(kind, method, monkeypatch):
    seen = []

    def spy(ctx):
        seen.append(ctx)
        return evaluations.Outcome(model="trained")

    monkeypatch.setitem(methods.METHODS, method, spy)
    ds = data.make_synthetic(num_train=40, num_test=8, dim_b=4, seed=0)
    task = common.Task("synthetic", ds.train, ds.test, None, ds.num_classes)
    config = common.Config(subset_size=10)
    assert bench.run_training(kind, task, config) == "trained"
    (ctx,) = seen
    assert ctx.config is config and ctx.task is task
    # online_ds hands the callback T' and V as datasets; the train split stays.
    assert isinstance(ctx.subset, tf.data.Dataset) == (kind == "online_ds")
    assert isinstance(ctx.heldout, tf.data.Dataset) == (kind == "online_ds")
    assert isinstance(ctx.train[1], type(ds.train[1]))


def test_audio_section_without_recordings_says_how_to_get_them():
    skipped = bench_audio.bench_audio(None, None, None)["skipped"]
    assert "git clone https://github.com/Jakobovski/free-spoken-digit-dataset" in (
        skipped
    )
    assert "--fsdd_dir" in skipped


def _check_ratio(entry, variants, target=None):
    """The ratio is the per-round ratio of the two variants' wall times."""
    assert RATIO_KEYS <= set(entry), sorted(entry)
    numerator, denominator = entry["ratio"].split(" / ")
    expected = [
        a / b
        for a, b in zip(
            variants[numerator]["wall"]["values"],
            variants[denominator]["wall"]["values"],
        )
    ]
    assert entry["values"] == pytest.approx(expected, rel=1e-3)
    assert entry["median"] == pytest.approx(statistics.median(expected), rel=1e-3)
    if target is not None:
        assert entry["target"] == target
        assert entry["met"] == (entry["median"] <= target)


@pytest.mark.slow
def test_quick_bench_writes_the_report(tmp_path):
    output = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "tools.bench", "--quick", f"--output={output}"],
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
    assert report["machine"]["cpu_count"] == os.cpu_count()  # This machine.
    assert report["command"] == f"python -m tools.bench --quick --output={output}"
    assert report["config"]["epochs"] == 2
    results = report["results"]
    assert set(results) == {"step", "online", "estimation", "audio", "memory"}

    step, online = results["step"], results["online"]
    _check_ratio(step, step["variants"], target=1.02)
    assert set(step["variants"]) == {"gblend", "plain"}
    _check_ratio(online, online["variants"], target=1.10)
    _check_ratio(online["online_ds"], online["variants"], target=1.10)
    assert set(online["measuring_seconds"]) == {"online", "online_ds"}
    for name in ("offline_estimate", "offline", "exact"):
        estimation = results["estimation"]
        _check_ratio(estimation[name], estimation["variants"])
    audio = results["audio"]
    if "skipped" not in audio:  # Needs the FSDD recordings (--fsdd_dir).
        _check_ratio(audio, audio["variants"], target=1.05)
        _check_ratio(audio["on_the_fly_fast"], audio["variants"], target=1.05)
    memory = results["memory"]["variants"]
    assert set(memory) >= {"baseline", "naive", "online", "offline", "exact"}
    for name, entry in memory.items():
        assert "error" not in entry, (name, entry)
        assert entry["variant"] == name  # Each process ran the variant asked for.
    # Every training run holds what the baseline holds (the same imports and
    # data) and its model on top: its peak is not below the baseline's (a few
    # MiB of allocator noise aside; in --quick the data's peak can dominate).
    baseline = memory["baseline"]["peak_rss_mib"]
    for name in ("naive", "online", "offline", "exact"):
        assert memory[name]["peak_rss_mib"] >= baseline - 16, (name, memory)
