"""Smoke tests of the experiment scripts on tiny settings."""

import dataclasses
import json
import os

import numpy as np
import pytest

from experiments import common, compare
from keras_gblend import GBlendModel

TINY = common.Config(
    epochs=2, offline_epochs=1, warmup_epochs=0, super_epoch=1, subset_size=64
)


def _tiny_task():
    from keras_gblend import data

    ds = data.make_synthetic(num_train=120, num_test=40, dim_b=32, seed=0)
    return common.Task("synthetic", ds.train, ds.test, None, ds.num_classes)


@pytest.mark.filterwarnings("ignore:G-Blend at epoch")
@pytest.mark.parametrize("method", common.METHODS)
def test_every_method_runs(method):
    rows = common.run_method(method, _tiny_task(), TINY, seed=0)
    assert rows
    for row in rows:
        assert 0.0 <= row["accuracy"] <= 1.0
        if row["weights"]:
            assert sum(row["weights"].values()) == pytest.approx(1.0)


def test_heldout_set_is_never_trained_on(monkeypatch):
    task = _tiny_task()
    seen = []
    fit = GBlendModel.fit

    def spy(self, x=None, y=None, **kwargs):
        seen.append(np.asarray(x["a"]))
        return fit(self, x, y, **kwargs)

    monkeypatch.setattr(GBlendModel, "fit", spy)
    common.run_method("gblend_online", task, TINY, seed=0)
    from keras_gblend import data

    _, (heldout_x, _) = data.holdout_split(
        task.train, heldout_fraction=TINY.heldout_fraction, seed=0
    )
    trained = {row.tobytes() for row in seen[0]}
    assert trained and not trained & {row.tobytes() for row in heldout_x["a"]}


def test_compare_smoke_writes_table_and_plot(tmp_path):
    config = dataclasses.replace(TINY, epochs=1)
    summary, rows, table = compare.run_comparison(
        "synthetic", ["unimodal", "naive", "gblend_online"], 1, config, str(tmp_path)
    )
    assert {"unimodal_a", "unimodal_b", "naive", "gblend_online"} == set(summary)
    assert "| gblend_online |" in table
    with open(os.path.join(tmp_path, "results.json")) as handle:
        assert json.load(handle)["summary"].keys() == summary.keys()
    assert os.path.getsize(os.path.join(tmp_path, "weights.png")) > 1000


def test_unknown_dataset_and_method():
    with pytest.raises(ValueError, match="`dataset` must be one of"):
        common.load_task("imagenet")
    with pytest.raises(ValueError, match="`method` must be one of"):
        common.run_method("magic", _tiny_task(), TINY)


def test_compare_command_line_smoke(tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.compare",
            "--preset=smoke",
            "--dataset=av_digits",
            "--methods=naive,gblend_online",
            "--config=subset_size=200",
            f"--output_dir={tmp_path}",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| gblend_online |" in result.stdout
    with open(os.path.join(tmp_path, "results.json")) as handle:
        results = json.load(handle)
    assert results["dataset"] == "av_digits" and results["config"]["epochs"] == 1
