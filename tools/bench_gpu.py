"""Every speed question of issue 19 in one command, sized for a GPU in under 5 min.

Runs, each in its own process with a time limit, and writes one markdown report:

1. `tools.bench_overhead` on every backend whose Python is given (or that the
   current Python can import): TensorFlow (also under `MirroredStrategy` on
   the visible GPUs), JAX, PyTorch; then the table across backends.
2. `tools.peer_torch`: the plain PyTorch G-Blend loop beside keras_gblend on the
   torch backend (on the GPU where PyTorch sees one).
3. `tools.bench_pipelines`: `files_dataset` vs in-memory tensors (TensorFlow).

On a GPU machine (one command; the environments of this repository do not
travel, so name the Pythons that have each backend, or let it find them):

    python -m tools.bench_gpu --output=gpu_report.md --out_dir=gpu_runs
    python -m tools.bench_gpu --python=jax=/opt/jax/bin/python ...

On a CPU, `--quick` runs the same steps at the smoke sizes of the tests (5 min
on 2 busy CPU cores, load average 8; its numbers mean nothing), which is how it
was checked: no GPU was lent to the session that wrote it, so it has not run
on one yet. `--only=peer,pipelines` runs some steps; `--budget` (290 s) stops
starting steps once spent.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tools import bench_overhead

REPO_ROOT = Path(__file__).resolve().parents[1]
IMPORTS = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
LOCAL_VENVS = {
    "tensorflow": ".venv/bin/python",
    "jax": ".venv-jax/bin/python",
    "torch": ".venv-torch/bin/python",
}
# Full-size settings: each step a fraction of the 5 minutes on a GPU.
FULL = {
    "overhead": ["--rounds=3", "--steps=100", "--epochs=6"],
    "peer": ["--rounds=3", "--epochs=5"],
    "pipelines": ["--rounds=2", "--epochs=3"],
}


STEP_BACKENDS = {
    "tensorflow": "tensorflow",
    "jax": "jax",
    "torch": "torch",
    "tensorflow_mirrored": "tensorflow",
    "peer": "torch",
    "pipelines": "tensorflow",
}


def find_pythons(overrides, backends=tuple(IMPORTS)):
    """Backend -> a Python that imports it: given, this repository's, or this one."""
    pythons = {}
    for backend in backends:
        module = IMPORTS[backend]
        candidates = [overrides.get(backend), str(REPO_ROOT / LOCAL_VENVS[backend])]
        candidates.append(sys.executable)
        for python in filter(None, candidates):
            if not Path(python).exists():
                continue
            probe = subprocess.run(
                [python, "-c", f"import {module}"], capture_output=True, cwd=REPO_ROOT
            )
            if probe.returncode == 0:
                pythons[backend] = python
                break
    return pythons


def run_module(python, backend, module, args, timeout):
    """Runs `python -m tools.<module> args` on `backend`; (seconds, error or None)."""
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])
    )
    start = time.perf_counter()
    try:
        done = subprocess.run(
            [python, "-m", f"tools.{module}", *args],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return time.perf_counter() - start, f"timed out after {timeout} s"
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        return seconds, f"exit {done.returncode}: {done.stderr[-2000:]}"
    return seconds, None


def devices():
    """What the machine has: `nvidia-smi -L`, or "no GPU"."""
    try:
        listed = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30
        )
        return listed.stdout.strip() or "no GPU"
    except (OSError, subprocess.TimeoutExpired):
        return "no GPU (nvidia-smi not found)"


def report(settings):
    """Runs every step; returns the markdown report."""
    out = Path(settings.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    overrides = dict(item.split("=", 1) for item in settings.python)
    wanted = {STEP_BACKENDS[step] for step in settings.only or STEP_BACKENDS}
    pythons = find_pythons(overrides, sorted(wanted))
    size = lambda key: ["--quick"] if settings.quick else FULL[key]  # noqa: E731
    load = os.getloadavg()
    lines = [
        "# Speed report (tools.bench_gpu"
        + (" --quick" if settings.quick else "")
        + ")",
        "",
        f"Machine: {devices()}; {os.cpu_count()} CPU cores; load average "
        f"{load[0]:.2f} at the start.",
        f"Pythons: {json.dumps(pythons)}.",
        "",
    ]
    steps = []
    for backend in ("tensorflow", "jax", "torch"):
        if backend in pythons:
            steps.append((backend, "bench_overhead", size("overhead"), backend))
    if "tensorflow" in pythons:
        steps.append(
            (
                "tensorflow",
                "bench_overhead",
                size("overhead") + ["--mirrored"],
                "tensorflow_mirrored",
            )  # fmt: skip
        )
    if "torch" in pythons:
        steps.append(("torch", "peer_torch", size("peer"), "peer"))
    if "tensorflow" in pythons:
        pipelines = size("pipelines")
        if settings.fsdd_dir:
            pipelines = pipelines + [f"--fsdd_dir={settings.fsdd_dir}"]
        steps.append(("tensorflow", "bench_pipelines", pipelines, "pipelines"))
    if settings.only:
        steps = [step for step in steps if step[3] in settings.only]
    overhead_jsons, start = [], time.perf_counter()
    for backend, module, args, name in steps:
        left = settings.budget - (time.perf_counter() - start)
        if left < 20:
            lines += [f"## {name} ({module}): skipped, the budget is spent", ""]
            continue
        json_path, md_path = out / f"{name}.json", out / f"{name}.md"
        seconds, error = run_module(
            pythons[backend],
            backend,
            module,
            [*args, f"--json={json_path}", f"--output={md_path}"],
            min(settings.timeout, int(left)),
        )
        lines.append(f"## {name} ({module}, {seconds:.0f} s)")
        lines.append("")
        if error:
            lines += ["```", error.strip(), "```", ""]
            continue
        lines += [md_path.read_text(), ""]
        if module == "bench_overhead":
            overhead_jsons.append(json_path)
    if overhead_jsons:
        results = [json.loads(Path(p).read_text()) for p in overhead_jsons]
        lines += [
            "## Across backends (separate processes: rough)",
            "",
            bench_overhead.combined_table(results),
        ]
    lines.append(f"Load average at the end: {os.getloadavg()[0]:.2f}.")
    return "\n".join(lines) + "\n"


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke sizes (CPU)")
    parser.add_argument("--out_dir", default="bench_gpu_runs")
    parser.add_argument("--output", default=None, help="markdown report (file)")
    parser.add_argument("--timeout", type=int, default=120, help="s per step")
    parser.add_argument("--budget", type=int, default=290, help="s in all")
    parser.add_argument(
        "--only",
        type=lambda text: text.split(","),
        default=None,
        help="steps to run: tensorflow, jax, torch, tensorflow_mirrored, peer, "
        "pipelines (default: all that can run)",
    )
    parser.add_argument("--fsdd_dir", default=os.environ.get("FSDD_DIR"))
    parser.add_argument(
        "--python", action="append", default=[], help="BACKEND=PATH (repeatable)"
    )
    return parser.parse_args(argv)


def main(argv=None):
    settings = parse(argv)
    text = report(settings)
    bench_overhead.write(text, settings.output)
    return text


if __name__ == "__main__":
    main()
