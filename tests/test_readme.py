"""Every README command block runs as written, or as its documented equivalent.

Python blocks run in order in one namespace (fewer epochs). Shell commands are
listed in `EQUIVALENTS`: the command this test runs for each (the same program
with a smaller setting where the real one takes minutes), or why it is not run.
A README command missing from the table fails `test_every_command_is_covered`.
"""

import os
import re

import numpy as np
import pytest

from tests.conftest import REPO_ROOT, SMOKE_DEMO
from tests.helpers import README_EPOCHS, run_python

# README command (prefix) -> the arguments run here, or None with the reason.
EQUIVALENTS = {
    # The same program, the smoke preset (run once: the `smoke_demo` fixture).
    "make demo": SMOKE_DEMO,
    "make test": None,  # This suite.
    "make test-backends": None,  # CI runs it (tests/backends on JAX and PyTorch).
    "make lint": None,  # ruff; the CI runs it.
    "pip install": None,  # Needs the network; `make demo` runs the same install.
    ".venv/bin/python -m tools.plot_blend": "README",  # As written, after the demo.
    ".venv/bin/python -m experiments.train": (
        "-m experiments.train --method=gblend_online --dataset=av_digits "
        "--epochs=1 --config=warmup_epochs=0,super_epoch=1,subset_size=64,"
        "encoders=image:mlp+audio:mlp --output_dir={out}/train"
    ),
    ".venv/bin/python -m experiments.compare": SMOKE_DEMO,
    ".venv/bin/python -m experiments.sensitivity": (
        "-m experiments.sensitivity --dataset=synthetic --seeds=1 --epochs=1 "
        "--params=smoothing --output_dir={out}/sensitivity"
    ),
}


def _readme():
    with open(os.path.join(REPO_ROOT, "README.md")) as handle:
        return handle.read()


def _blocks(language):
    return re.findall(rf"```{language}\n(.*?)```", _readme(), flags=re.S)


def _commands():
    for block in _blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            command = line.split("  #")[0].strip()
            if command:
                yield command


def _prefixes(command):
    return [p for p in EQUIVALENTS if command == p or command.startswith(p + " ")]


def _equivalent(command):
    (prefix,) = _prefixes(command)
    return EQUIVALENTS[prefix]


def _python(args, out):
    # The user's environment: no PYTHONPATH added, the commands run as written.
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = run_python(*args.format(out=out).split(), env=env)
    assert "Traceback" not in result.stderr and "oneDNN" not in result.stderr
    return result


def test_every_command_is_covered():
    commands = list(_commands())
    assert any("tools.plot_blend" in c for c in commands)
    for command in commands:
        matches = _prefixes(command)
        assert len(matches) == 1, f"README command without an equivalent: {command}"


@pytest.mark.filterwarnings("ignore:G-Blend at epoch")
@pytest.mark.slow
def test_use_on_your_own_data_example_runs(readme_first_block):
    model, chosen = readme_first_block["model"], readme_first_block["chosen"]
    assert sorted(chosen.scores) == [0.003, 0.01, 0.03]
    assert chosen.scores[chosen.learning_rate] == max(chosen.scores.values())
    assert float(model.optimizer.learning_rate) == pytest.approx(chosen.learning_rate)
    # The default callback ran in every epoch, logged each head's weight, and
    # chose the output mode on V: what predict_output answers with.
    logs = model.history.history
    assert all(
        len(logs[f"gblend_weight_{h}"]) == README_EPOCHS
        for h in ("image", "audio", "fused")
    )
    # The default scale: the most-weighted head at 1, the others below.
    assert max(model.get_blend_weights().values()) == pytest.approx(1.0, abs=1e-6)
    assert model.output_mode in ("fused", "mean", "weighted")
    test = readme_first_block["test"]
    expected = (model.predict_output(test.x).argmax(-1) == test.y).mean()
    assert readme_first_block["accuracy"] == expected


def _run_block(code, namespace):
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:G-Blend at epoch")
def test_offline_inference_and_export_blocks_run(
    readme_first_block, tmp_path, monkeypatch
):
    (offline,) = (
        b
        for b in _blocks("python")
        if "estimate_offline(" in b and "select_learning_rate(" not in b
    )
    (inference,) = (b for b in _blocks("python") if "evaluate_outputs(" in b)
    (export,) = (b for b in _blocks("python") if "served.signatures" in b)
    namespace = dict(readme_first_block)
    _run_block(
        offline.replace("epochs=10", "epochs=1").replace("epochs=30", "epochs=1"),
        namespace,
    )
    assert namespace["estimate"].weights.shape == (3,)
    _run_block(inference, namespace)
    model = namespace["model"]
    assert model.output_mode == "weighted"
    # With the audio missing, the output is the image head alone.
    image_only = model.predict(namespace["heldout"][0], verbose=0)["image"]
    np.testing.assert_allclose(namespace["probs"], image_only, atol=1e-6)
    monkeypatch.chdir(tmp_path)
    _run_block(export, namespace)
    x4 = namespace["x4"]
    expected = model.predict_output(x4)
    np.testing.assert_allclose(namespace["out"]["probabilities"], expected, atol=1e-5)
    np.testing.assert_allclose(
        namespace["only_image"]["probabilities"],
        model.predict(x4, verbose=0)["image"],
        atol=1e-5,
    )
    assert (tmp_path / "model.keras").is_file()


@pytest.mark.slow
def test_demo_then_the_plot_command(smoke_demo, tmp_path):
    assert _equivalent("make demo") == SMOKE_DEMO  # What `smoke_demo` ran.
    demo, output_dir = smoke_demo
    assert "Traceback" not in demo.stderr and "oneDNN" not in demo.stderr
    (plot,) = [c for c in _commands() if "tools.plot_blend" in c]
    args = plot.split(" ", 1)[1].replace("runs/demo", str(output_dir))
    result = _python(args, tmp_path)
    names = [os.path.basename(p) for p in result.stdout.split()]
    assert names == ["gblend_weights.png", "gblend_deltas.png", "gblend_losses.png"]


@pytest.mark.slow
def test_experiment_commands(tmp_path):
    for command in _commands():
        args = _equivalent(command)
        if args and ("experiments.train" in command or "sensitivity" in command):
            _python(args, tmp_path)
    assert (tmp_path / "train" / "av_digits_gblend_online_seed0.state.json").is_file()
    assert (tmp_path / "sensitivity" / "sensitivity.md").is_file()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:G-Blend at epoch")
def test_first_block_beats_naive_fusion_on_av_digits(readme_first_block):
    """The first block and the baselines block, as written but with
    `README_EPOCHS` (6) epochs instead of 30 and naive fusion as the only
    baseline, on the real AV-Digits split: the defaults' output is at least
    naive fusion's (RESULTS.md has the same over folds and seeds)."""
    blocks = _blocks("python")
    (baselines,) = (b for b in blocks if "def baseline(head)" in b)
    loop = 'for head in ("fused", "image", "audio"):'
    assert loop in baselines
    baselines = baselines.replace(loop, 'for head in ("fused",):')
    namespace = dict(readme_first_block)  # The first block's run, then this.
    _run_block(baselines.replace("epochs=30", f"epochs={README_EPOCHS}"), namespace)
    accuracy, others = namespace["accuracy"], namespace["baselines"]
    assert set(others) == {"fused"}
    assert accuracy >= others["fused"], (accuracy, others)
