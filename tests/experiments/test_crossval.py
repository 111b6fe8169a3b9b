"""The cross-validation protocol: folds, selection on V only, statistics, resuming."""

import dataclasses
import functools
import json

import numpy as np
import pytest

from experiments import common, cv_report, legends, methods, protocol
from experiments.ledger import Ledger
from tests.conftest import REPO_ROOT

GRID = (0.001, 0.01, 0.1)


def _pool(num_speakers=6, per_speaker=12):
    """A toy pool whose feature `id` is the example's row number."""
    n = num_speakers * per_speaker
    rows = np.arange(n, dtype=np.float32)
    x = {"id": rows[:, None], "audio": np.random.default_rng(0).normal(size=(n, 3))}
    return x, np.arange(n) % 3, np.repeat(np.arange(num_speakers), per_speaker)


def _ids(split):
    return set(np.asarray(split[0]["id"])[:, 0].astype(int).tolist())


class _Unreadable:
    """A test split that fails the moment anything reads it."""

    def __getitem__(self, index):
        raise AssertionError("the test split was read")

    def __iter__(self):
        raise AssertionError("the test split was read")


def test_every_speaker_is_tested_once_and_never_trained_on():
    pool = _pool()
    folds = protocol.speaker_folds(pool[2], 3)
    assert sorted(s for f in folds for s in f) == list(range(6))
    for speakers in folds:
        task = protocol.fold_task(pool, speakers)
        test_ids, train_ids = _ids(task.test), _ids(task.train)
        assert test_ids == set(np.flatnonzero(np.isin(pool[2], speakers)).tolist())
        assert not test_ids & train_ids and len(test_ids | train_ids) == 72
        assert not set(task.groups.tolist()) & set(speakers)
    with pytest.raises(ValueError, match="num_folds"):
        protocol.speaker_folds(pool[2], 6)


def test_audio_is_standardised_on_the_training_speakers_only():
    pool = _pool()
    pool[0]["audio"][np.isin(pool[2], [0, 1])] += 100.0  # test speakers shifted
    task = protocol.fold_task(pool, [0, 1])
    np.testing.assert_allclose(task.train[0]["audio"].mean(0), 0, atol=1e-5)
    assert task.test[0]["audio"].mean() > 10  # the shift is not normalised away


def test_selection_never_reads_the_test_split_and_scores_on_v():
    pool = _pool()
    task = protocol.fold_task(pool, [0, 1])
    seen = []

    def run_fn(method, sel, config, seed):
        seen.append((_ids(sel.train), _ids(sel.test), set(sel.groups.tolist())))
        return [dict(method=method, accuracy=config.learning_rate)]

    poisoned = dataclasses.replace(task, test=_Unreadable())
    ledger = Ledger(None, {})
    lrs = protocol.select_learning_rates(
        "m", poisoned, common.Config(), GRID, ledger=ledger, fold=0, run_fn=run_fn
    )
    assert lrs == {"m": 0.1}  # the best score on V
    assert len(seen) == len(GRID)
    train_ids = _ids(task.train)
    for trained, scored, groups in seen:
        # V: whole training speakers, disjoint from what the selection run trains on.
        assert scored <= train_ids and trained <= train_ids and not trained & scored
        v_speakers = set(pool[2][sorted(scored)].tolist())
        assert not v_speakers & groups and not v_speakers & {0, 1}


def _fake_run(calls, fail_after=None):
    """A harness run whose score prefers lr 0.1 on V and lr 0.001 on test."""

    def run_fn(method, task, config, seed):
        if fail_after is not None and len(calls) >= fail_after:
            raise KeyboardInterrupt("killed")
        fold = frozenset(_ids(task.train))  # tells the folds apart
        calls.append((method, task.name, fold, config.learning_rate, seed))
        on_v = task.name.endswith("/select")
        lr = config.learning_rate
        score = lr if on_v else 1 - lr - 0.01 * seed
        if method == "unimodal":
            return [
                dict(method="unimodal_image", accuracy=score, ensemble_accuracy=None),
                dict(method="unimodal_audio", accuracy=score / 2),
            ]
        return [dict(method=method, accuracy=score, ensemble_accuracy=score)]

    return run_fn


def test_learning_rate_is_chosen_on_v_even_when_test_prefers_another():
    calls = []
    results = protocol.run_protocol(
        ["unimodal", "naive"], _pool(), common.Config(), folds=3, seeds=2,
        grid=GRID, run_fn=_fake_run(calls), log=lambda _: None,
    )  # fmt: skip
    assert {r["lr"] for r in results} == {0.1}
    assert len(results) == 3 * 2 * 3  # folds x seeds x result rows
    # Selection: one run per fold, method and rate; test: one per fold, method, seed.
    assert len(calls) == 3 * 2 * len(GRID) + 3 * 2 * 2
    assert {c[3] for c in calls if not c[1].endswith("/select")} == {0.1}


def test_a_one_rate_grid_runs_no_selection():
    calls = []
    results = protocol.run_protocol(
        ["unimodal", "naive"], _pool(), common.Config(), folds=3, seeds=1,
        grid=(0.01,), run_fn=_fake_run(calls), log=lambda _: None,
    )  # fmt: skip
    assert not [c for c in calls if c[1].endswith("/select")]
    assert len(calls) == 3 * 2  # folds x methods, one test run each
    assert {r["lr"] for r in results} == {0.01} and len(results) == 3 * 3


def test_a_killed_run_resumes_where_it_stopped(tmp_path):
    path = str(tmp_path / "results.jsonl")
    kwargs = dict(folds=3, seeds=2, grid=GRID, log=lambda _: None)
    names, config = ["unimodal", "naive"], common.Config()
    first = []
    with pytest.raises(KeyboardInterrupt):
        protocol.run_protocol(
            names, _pool(), config, output=path,
            run_fn=_fake_run(first, fail_after=10), **kwargs,
        )  # fmt: skip
    with open(path, "a") as handle:
        handle.write('{"kind": "test", "fold"')  # torn line of the killed write
    second = []
    resumed = protocol.run_protocol(
        names, _pool(), config, output=path, run_fn=_fake_run(second), **kwargs
    )
    assert len(first) == 10 and not set(first) & set(second)
    assert len(first) + len(second) == 3 * 2 * len(GRID) + 3 * 2 * 2
    fresh = protocol.run_protocol(
        names, _pool(), config, run_fn=_fake_run([]), **kwargs
    )
    assert resumed == fresh
    with pytest.raises(ValueError, match="another setting"):
        protocol.run_protocol(
            names, _pool(), dataclasses.replace(config, epochs=3), output=path,
            run_fn=_fake_run([]), **kwargs,
        )  # fmt: skip


def test_recorded_only_reports_what_ran_and_trains_nothing(tmp_path):
    path = str(tmp_path / "results.jsonl")
    kwargs = dict(folds=3, seeds=1, grid=GRID, log=lambda _: None, output=path)
    config = common.Config()
    with pytest.raises(KeyboardInterrupt):  # Killed during fold 1's naive runs.
        protocol.run_protocol(
            ["naive"], _pool(), config, run_fn=_fake_run([], fail_after=7), **kwargs
        )
    partial = protocol.run_protocol(
        ["naive", "unimodal"], _pool(), config, recorded_only=True,
        run_fn=_fake_run([]), **kwargs,
    )  # fmt: skip
    # Fold 0 ran whole (3 selection runs + 1 test run); fold 1 is incomplete.
    assert [(r["fold"], r["method"]) for r in partial] == [(0, "naive")]
    full = protocol.run_protocol(
        ["naive"], _pool(), config, run_fn=_fake_run([]), **kwargs
    )
    assert full[0] == partial[0]


def test_paired_ci_is_the_t_interval():
    mean, low, high = cv_report.paired_ci([1.0, 2.0, 3.0, 6.0])
    sd = np.std([1, 2, 3, 6], ddof=1)
    assert mean == 3.0
    assert high - mean == pytest.approx(3.182 * sd / 2)
    assert low == pytest.approx(2 * mean - high)
    assert cv_report.paired_ci([2.5]) == (2.5, 2.5, 2.5)
    assert cv_report.t_quantile(5) == 2.571 and cv_report.t_quantile(13) == 2.179


def test_summary_pairs_by_fold_and_seed_and_counts_wins():
    def result(method, fold, seed, acc, ens=None):
        return dict(method=method, fold=fold, seed=seed, lr=0.01, accuracy=acc,
                    ensemble_accuracy=ens, weights=None)  # fmt: skip

    results = [
        result("unimodal_image", 0, 0, 90.0), result("unimodal_image", 1, 0, 80.0),
        result("naive", 0, 0, 88.0, 70.0), result("naive", 1, 0, 82.0, 75.0),
        result("naive", 2, 0, 99.0, 75.0),  # no image-only partner: not paired
    ]  # fmt: skip
    vs = cv_report.summarise(results)["naive"]["vs"]["unimodal_image"]
    assert vs["n"] == 2 and vs["mean"] == pytest.approx(0.0)
    assert (vs["wins"], vs["ties"], vs["losses"]) == (1, 0, 1)
    assert vs["ens_mean"] == pytest.approx((70 - 90 + 75 - 80) / 2)
    table = cv_report.format_table(cv_report.summarise(results))
    (naive,) = [line for line in table.splitlines() if line.startswith("| naive |")]
    # Mean of 3 runs (89.7, ensemble 73.3); against image-only over the 2
    # pairs: -2, +2, so +0.0 with t(1) = 12.706 times sd / sqrt(2) = 25.4.
    assert naive.startswith("| naive | 3 | 0.01 | 89.7 | 73.3 |")
    assert "| +0.0 [-25.4, +25.4] (1/0/1) |" in naive


def test_the_table_ends_with_its_legend():
    results = [
        dict(method=m, fold=f, seed=0, lr=0.03, accuracy=a + f, ensemble_accuracy=a)
        for m, a in (("unimodal_image", 90.0), ("naive", 88.0), ("heads_dropout", 92.0))
        for f in range(3)
    ]
    table, legend = legends.crossval_table(cv_report.summarise(results)).split(
        "\n\nColumns:\n"
    )
    assert table.splitlines()[-1].startswith("| heads_dropout | 3 | 0.03 | 93.0 |")
    text = " ".join(legend.split())
    for column in ("n:", "lr(s):", "output %:", "ensemble %:", "(W/T/L): runs where"):
        assert column in text
    assert "output - <baseline> [95% CI]: paired difference in points" in text
    assert "<baseline>: each of unimodal_image, naive, in turn" in text
    assert "heads_dropout: The recipe without G-Blend: every head's loss" in text
    assert "naive: Late fusion trained on the fused head's loss only" in text


@pytest.mark.slow
def test_smoke_with_the_real_harness(tmp_path):
    x, y, speakers = _pool(per_speaker=16)
    rng = np.random.default_rng(1)
    x = {m: rng.normal(size=(96, d)).astype("float32") for m, d in (("a", 4), ("b", 6))}
    config = dataclasses.replace(
        common.Config(), **dict(protocol.SMOKE, subset_size=16)
    )
    path = str(tmp_path / "cv.jsonl")
    # The real runner, without the extra evaluations (the output modes: every
    # row's test in tests/experiments/test_methods.py): the selection reads
    # the rows' accuracy only.
    run_fn = functools.partial(methods.run_method, evaluations=())
    results = protocol.run_protocol(
        ["naive"], (x, y, speakers), config, folds=2, seeds=1, grid=(0.01, 0.1),
        output=path, log=lambda _: None, run_fn=run_fn,
    )  # fmt: skip
    with open(path) as handle:
        records = [json.loads(line) for line in handle if line.strip()]
    kinds = [r["kind"] for r in records]
    assert kinds.count("select") == 2 * 2 and kinds.count("test") == 2
    # Each fold's result is its test run at the rate that scored best on V (ties:
    # the smaller), in % of the row the runner recorded.
    assert [r["fold"] for r in results] == [0, 1]
    for result in results:
        fold = result["fold"]
        on_v = {
            r["lr"]: r["rows"][0]["accuracy"]
            for r in records
            if r["kind"] == "select" and r["fold"] == fold
        }
        best = max(on_v, key=lambda lr: (on_v[lr], -lr))
        (test,) = [r for r in records if r["kind"] == "test" and r["fold"] == fold]
        assert result["lr"] == best == test["lr"]
        assert result["accuracy"] == pytest.approx(100 * test["rows"][0]["accuracy"])


@pytest.mark.slow
def test_the_demo_command_line_runs_and_writes_its_table(tmp_path):
    import os
    import subprocess
    import sys

    out = tmp_path / "cv.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "experiments.crossval", "--preset=demo",
         "--methods=naive", "--config=epochs=1", "--evaluations=",
         f"--output={out}"],
        cwd=REPO_ROOT,
        capture_output=True, text=True, timeout=600,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    with open(out) as handle:
        records = [json.loads(line) for line in handle if line.strip()]
    tests = [r for r in records if r["kind"] == "test"]
    assert [r["fold"] for r in tests] == [0, 1, 2]
    assert {r["lr"] for r in tests} == {0.03}
    assert not [r for r in records if r["kind"] == "select"]
    # --evaluations= (none): the table reads the accuracies only.
    assert all("modes" not in row for r in tests for row in r["rows"])
    table = (tmp_path / "cv.md").read_text()
    assert "| naive | 3 | 0.03 |" in table
    # Printed after the table: its legend.
    assert done.stdout.index("| naive | 3 |") < done.stdout.index("(W/T/L): runs")
