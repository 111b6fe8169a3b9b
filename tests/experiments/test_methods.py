"""The experiments: the method table, its runner, and the command-line programs."""

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from experiments import cli, common, compare, evaluations, legends, methods
from keras_gblend import GBlendModel, data
from keras_gblend.report.history import read_history
from tests.conftest import REPO_ROOT, SMOKE_DEMO

TINY = common.Config(
    epochs=2, offline_epochs=1, warmup_epochs=0, super_epoch=1, subset_size=64
)
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
# How `make demo` runs the programs: TensorFlow's C++ errors hidden too.
DEMO_ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")


def _tiny_task():
    ds = data.make_synthetic(num_train=120, num_test=40, dim_b=32, seed=0)
    return common.Task("synthetic", ds.train, ds.test, None, ds.num_classes)


def _run(*args, timeout=300, env=ENV):
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


NAIVE = {"a": 0.0, "b": 0.0, "fused": 1.0}
UNIFORM = {"a": 1 / 3, "b": 1 / 3, "fused": 1 / 3}
EXPECTED_WEIGHTS = {
    "naive": NAIVE,
    "dropout": NAIVE,
    "early_stopping": NAIVE,
    "pretrain": NAIVE,
    "naive_lr_third": NAIVE,
    "naive_lr_x3": NAIVE,
    "dropout_x3": NAIVE,
    "uniform": UNIFORM,
    "uniform_x3": UNIFORM,
    "uniform_heads_dropout": UNIFORM,
    "heads_dropout": {"a": 1.0, "b": 1.0, "fused": 1.0},
}
# Rows with an in-situ GBlendCallback (they write a state file).
ONLINE = {
    "gblend_online",
    "gblend_exact",
    "gblend_dropout",
    "gblend_recipe",
    "gblend_default",
    "gblend_default_num_heads",
    "gblend_x3",
    "gblend_x3_floor",
    "gblend_x3_stop",
    "gblend_x3_dropout",
    "recipe_paper",
    "recipe_uncertain",
    "recipe_windowed",
    "recipe_robust",
    "recipe_rate",
    "recipe_rate_uncertain",
}
# Rows whose estimator floors the fused head's share at 1 / (K + 1).
FUSED_FLOOR = {"gblend_x3_floor"} | {m for m in ONLINE if m.startswith("recipe_")}


# Every row of the comparison, and one of each kind of the fused-head study's
# (each of those is built on the first: tests/experiments/test_study_rows.py).
TRAINED = compare.FULL_METHODS + [
    "naive_lr_third",
    "uniform_heads_dropout",
    "gblend_x3_stop",
    "recipe_rate_uncertain",
]


@pytest.mark.filterwarnings("ignore:G-Blend at epoch")
# gblend_default keeps the callback's own schedule (first estimate after epoch 5).
@pytest.mark.filterwarnings("ignore:G-Blend. fit.epochs=2. ends before")
@pytest.mark.parametrize("method", TRAINED)
def test_every_method_trains_with_its_own_weights(method, tmp_path):
    state_path = str(tmp_path / "state.json")
    rows = methods.run_method(method, _tiny_task(), TINY, state_path=state_path)
    if method == "unimodal":
        assert [r["method"] for r in rows] == ["unimodal_a", "unimodal_b"]
        for row, head in zip(rows, "ab"):
            assert row["head_accuracy"] == {head: row["accuracy"]}
            assert row["weights"] is None and row["ensemble_accuracy"] is None
        return
    (row,) = rows
    # The first block's row is scored on the output mode it chose on V.
    first_block = method in ("gblend_default", "gblend_default_num_heads")
    output = evaluations.OUTPUT if first_block else "fused"
    assert row["method"] == method and row["accuracy"] == row["head_accuracy"][output]
    if method in EXPECTED_WEIGHTS:
        assert row["weights"] == pytest.approx(EXPECTED_WEIGHTS[method])
    if method in ONLINE:
        # The state file the plot command reads ends with the blend weights
        # (summing to 1); the model trained with them scaled: to sum to the
        # number of heads, 3 (the recipe), or the largest to 1 (the default).
        history = read_history(row["state_path"])
        final = {h: history.series("weight", h)[1][-1] for h in history.head_names}
        scale = {
            "gblend_recipe": 3.0,
            "gblend_default_num_heads": 3.0,
            "gblend_default": 1.0 / max(final.values()),
        }.get(method, 1.0)
        assert {h: scale * w for h, w in final.items()} == pytest.approx(row["weights"])
        if method in FUSED_FLOOR:  # Weights sum to 1 (the rate carries the scale).
            assert final["fused"] >= 1 / 3 - 1e-6
    else:
        assert row["state_path"] is None and not os.path.exists(state_path)
    if method == "gblend_offline":  # Estimated, not the initial uniform weights.
        assert row["weights"] != pytest.approx(EXPECTED_WEIGHTS["uniform"])
    if method == "gblend_offline_recipe":  # Offline, fused share >= 1/3, x (K + 1).
        assert sum(row["weights"].values()) == pytest.approx(3.0, abs=1e-5)
        assert row["weights"]["fused"] >= 1.0 - 1e-6
        assert row["weights"] != pytest.approx(EXPECTED_WEIGHTS["heads_dropout"])
    if method == "ogm_ge":  # Not a multi-head model: no heads, modes or weights.
        assert row["head_accuracy"] == {"fused": row["accuracy"]}
        assert "modes" not in row and row["weights"] is None
        return
    # The output modes, computed by the model, agree with the runner's own
    # evaluation of the fused head and of the heads' mean.
    modes = row["modes"]
    assert modes[row["output_mode"]] == pytest.approx(row["accuracy"])
    assert row["output_mode"] in (("fused",) if output == "fused" else modes)
    assert modes["mean"] == pytest.approx(row["ensemble_accuracy"])
    assert {k for k in modes if "_without_" in k} == {
        f"{mode}_without_{m}" for mode in ("fused", "weighted") for m in "ab"
    }


def test_evaluation_matches_the_models_own_predictions(monkeypatch):
    """A new method and a new result field plug in with one table entry each."""
    trained = []

    def untrained(ctx):
        model = common.build_model(ctx.task, ctx.config)
        trained.append(model)
        return evaluations.Outcome(model, extra={"note": "untrained"})

    monkeypatch.setitem(methods.METHODS, "untrained", untrained)
    monkeypatch.setitem(
        methods.EVALUATIONS, "heads", lambda out, ctx: list(out.model.head_names)
    )
    task = _tiny_task()
    (row,) = methods.run_method("untrained", task, TINY, seed=3, evaluations=("heads",))
    x, y = task.test
    probs = trained[0].predict(x, verbose=0)
    expected = {h: float(np.mean(np.argmax(p, -1) == y)) for h, p in probs.items()}
    ensemble = np.argmax(sum(probs.values()) / 3, -1)
    assert row["head_accuracy"] == pytest.approx(expected)
    assert row["accuracy"] == pytest.approx(expected["fused"])
    assert row["ensemble_accuracy"] == pytest.approx(np.mean(ensemble == y))
    assert row["heads"] == ["a", "b", "fused"] and row["note"] == "untrained"
    assert "modes" not in row  # Only the evaluations asked for.
    with pytest.raises(ValueError, match="`evaluations` must be keys of"):
        methods.run_method("untrained", task, TINY, evaluations=("nope",))
    assert row["method"] == "untrained" and row["seed"] == 3


def test_stale_state_file_is_replaced_not_resumed(tmp_path):
    path = tmp_path / "state.json"
    path.write_text('{"not": "a state"}')
    ctx = common.make_context(_tiny_task(), TINY, state_path=str(path))
    assert ctx.fresh_state_path() == str(path) and not path.exists()


def test_heldout_set_is_never_trained_on(monkeypatch):
    task = _tiny_task()
    seen = []
    fit = GBlendModel.fit

    def spy(self, x=None, y=None, **kwargs):
        seen.append(np.asarray(x["a"]))
        return fit(self, x, y, **kwargs)

    monkeypatch.setattr(GBlendModel, "fit", spy)
    methods.run_method("gblend_online", task, TINY, seed=0, evaluations=())
    _, (heldout_x, _) = data.holdout_split(
        task.train, heldout_fraction=TINY.heldout_fraction, seed=0
    )
    trained = {row.tobytes() for row in seen[0]}
    assert trained and not trained & {row.tobytes() for row in heldout_x["a"]}


def test_table_prints_no_spread_for_one_seed():
    rows = [
        dict(method="m", seed=s, accuracy=a, ensemble_accuracy=0.5, weights=None)
        | {"seconds": 1.0}
        for s, a in ((0, 0.9), (1, 0.8))
    ]
    one = compare.markdown_table(compare.summarise(rows[:1]))
    two = compare.markdown_table(compare.summarise(rows))
    assert "| m | 90.0 | 50.0 | 90.0 |" in one and "±" not in one
    assert "| m | 85.0 ± 5.0 | 50.0 ± 0.0 | 90.0 80.0 |" in two


def _summary(**accuracies):
    return {m: {"accuracy_mean": a} for m, a in accuracies.items()}


def test_conclusions_are_computed_from_the_numbers():
    hurt = legends.compare_conclusions(
        _summary(unimodal_image=90.0, unimodal_audio=40.0, naive=85.0,
                 gblend_offline=91.5, gblend_online=88.0), seeds=1
    )  # fmt: skip
    text = " ".join(hurt.split())
    assert text.startswith("Best: gblend_offline, 91.5% test accuracy.")
    assert (
        "Naive fusion (85.0%) is 5.0 points below the best single modality "
        "(unimodal_image, 90.0%): fusing the modalities naively loses" in text
    )
    assert "gblend_offline (91.5%), is +6.5 points vs naive and +1.5 vs" in text
    assert "One seed" in text and "in-situ weights swing" in text
    helps = " ".join(
        legends.compare_conclusions(
            _summary(unimodal_a=60.0, naive=70.0, gblend_offline=69.0), seeds=5
        ).split()
    )
    assert helps.startswith("Best: naive, 70.0%")
    assert "10.0 points above the best single modality (unimodal_a, 60.0%)" in helps
    assert "-1.0 points vs naive and +9.0 vs unimodal_a" in helps
    assert "One seed" not in helps and "in-situ" not in helps  # 5 seeds, offline


def test_legend_names_every_column_and_method_of_the_table():
    summary = _summary(unimodal_a=60.0, naive=70.0, gblend_online=71.0)
    table, legend = (
        compare.markdown_table({m: {**s, **ROW} for m, s in summary.items()}),
        legends.compare_legend(summary),
    )
    header = [c.strip() for c in table.splitlines()[0].strip("|").split("|")][1:]
    for column in header:
        assert any(column.startswith(name) for name in legends.COMPARE_COLUMNS)
    for method, doc in (
        ("unimodal_a", "One model per modality"),
        ("naive", "Late fusion"),
        ("gblend_online", "Weights"),
    ):
        assert f"\n  {method}: {doc}" in legend  # fmt: skip


def test_every_method_is_the_row_of_its_name_so_its_legend_is_its_docstring():
    # `legends.describe` reads `rows.<name>.__doc__`; the table must not map a
    # name to another function.
    from experiments import rows

    for name, method in methods.METHODS.items():
        assert method is getattr(rows, name), name
        first = " ".join(method.__doc__.split()).split(". ")[0].rstrip(".")
        assert legends.describe(name) == first
    assert legends.describe("no_such_method") == ""
    for row, method in legends.YIELDED_BY.items():
        assert method in methods.METHODS and legends.describe(row), row


ROW = dict(accuracy_std=0.0, accuracy_per_seed=[1.0], ensemble_mean=None,
           ensemble_std=None, seconds_mean=1.0)  # fmt: skip


def test_config_overrides_name_the_valid_fields_and_types():
    assert cli.parse_overrides(["epochs=4", "encoders=a:mlp"]) == {
        "epochs": 4,
        "encoders": "a:mlp",
    }
    with pytest.raises(ValueError, match=r"min_weight \(float, 0.05\).*'nope=1'"):
        cli.parse_overrides(["nope=1"])
    with pytest.raises(ValueError, match="'epochs' must be a int. Received 'x'"):
        cli.parse_overrides(["epochs=x"])


def test_unknown_dataset_and_method():
    with pytest.raises(ValueError, match="`dataset` must be one of"):
        common.load_task("imagenet")
    with pytest.raises(ValueError, match="`method` must be one of"):
        methods.run_method("magic", _tiny_task(), TINY)


@pytest.mark.slow  # Over 20 s on 2 cores.
def test_compare_writes_table_plot_and_state_files(tmp_path, monkeypatch):
    config = dataclasses.replace(TINY, epochs=1)
    loaded = []

    def tiny_task(name, config, seed=0):  # What it writes, not the data's size.
        loaded.append((name, seed))
        return _tiny_task()

    monkeypatch.setattr(common, "load_task", tiny_task)
    summary, rows, table = compare.run_comparison(
        "synthetic", ["unimodal", "naive", "gblend_online"], 1, config, str(tmp_path)
    )
    assert loaded == [("synthetic", 0)]
    assert {"unimodal_a", "unimodal_b", "naive", "gblend_online"} == set(summary)
    assert "| gblend_online |" in table
    with open(os.path.join(tmp_path, "results.json")) as handle:
        assert json.load(handle)["summary"].keys() == summary.keys()
    assert os.path.getsize(os.path.join(tmp_path, "weights.png")) > 1000
    state = compare.state_path(str(tmp_path), "gblend_online", 0)
    assert read_history(state).head_names == ("a", "b", "fused")


def test_train_help_exits_zero_and_lists_config_fields():
    result = _run("-m", "experiments.train", "--help", timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "min_weight (float, 0.05)" in result.stdout
    assert "--state_path" in result.stdout


def test_bad_config_is_a_usage_error_without_traceback():
    result = _run("-m", "experiments.train", "--config=nope=1", timeout=120)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "name one of: epochs (int, 30)" in result.stderr


@pytest.mark.slow
def test_compare_command_line_is_quiet_and_reproducible(smoke_demo, tmp_path):
    """The smoke demo (`smoke_demo`, a first run), then its G-Blend row alone in
    a new process: the same numbers (each row is seeded; it does not depend on
    the rows run before it)."""
    demo, first_dir = smoke_demo
    methods_flag = "--methods=naive,gblend_online"
    assert methods_flag in SMOKE_DEMO
    args = SMOKE_DEMO.replace(methods_flag, "--methods=gblend_online")
    result = _run(*args.split(), f"--output_dir={tmp_path}", env=DEMO_ENV)
    assert result.returncode == 0, result.stderr[-2000:]
    results = []
    for output_dir in (first_dir, tmp_path):
        with open(output_dir / "results.json") as handle:
            results.append(json.load(handle))
    for run in (demo, result):
        assert "| gblend_online |" in run.stdout
        assert '{"output_dir"' not in run.stdout  # No stray machine line.
        assert "oneDNN" not in run.stderr and "E0000" not in run.stderr
    assert results[0]["dataset"] == "av_digits" and results[0]["config"]["epochs"] == 1
    # Deterministic ops: the same seed gives the same numbers, run after run.
    first, second = (
        {r["method"]: r for r in x["rows"]}["gblend_online"] for x in results
    )
    assert [r["method"] for r in results[1]["rows"]] == ["gblend_online"]
    assert first["head_accuracy"] == second["head_accuracy"]
    assert first["weights"] == second["weights"]
    # After the table: its legend, then what it shows, from its numbers.
    out = demo.stdout
    assert out.index("| gblend_online |") < out.index("Columns:")
    for column in legends.COMPARE_COLUMNS:
        assert f"  {column}: " in out
    assert "  gblend_online: Weights re-estimated during training" in out
    summary = results[0]["summary"]
    best = max(summary, key=lambda m: summary[m]["accuracy_mean"])
    text = " ".join(out.split("Methods:")[1].split())
    assert f"Best: {best}, {summary[best]['accuracy_mean']:.1f}% test accuracy." in text
    gap = summary["gblend_online"]["accuracy_mean"] - summary["naive"]["accuracy_mean"]
    online = summary["gblend_online"]["accuracy_mean"]
    assert f"gblend_online ({online:.1f}%), is {gap:+.1f} points vs naive." in text
    assert "Why in-situ weights swing between estimates" in text


@pytest.mark.parametrize("name", ["results.json", "missing.json"])
def test_plot_command_explains_what_history_it_needs(name, tmp_path):
    (tmp_path / "results.json").write_text('{"dataset": "av_digits", "rows": []}')
    result = _run(
        "-m",
        "tools.plot_blend",
        f"--history={tmp_path / name}",
        f"--output_dir={tmp_path}",
        timeout=120,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "runs/demo/states/" in result.stderr
