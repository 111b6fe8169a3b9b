"""The tables of `tools.bench_overhead`: one backend's, and the backends joined.

Kept apart from the measuring code so each file holds one concept; the
benchmarks' other tools format their cells with `cell`.
"""

from __future__ import annotations


def cell(entry, scale=1.0, digits=2):
    """`median (min - max)` of a `summary` entry, scaled."""
    return (
        f"{entry['median'] * scale:.{digits}f} "
        f"({entry['min'] * scale:.{digits}f} - {entry['max'] * scale:.{digits}f})"
    )


def table(result):
    """The markdown table of one backend's result."""
    step, run = result["step"], result["run"]
    load = result["load_average"]
    rows = [
        ("plain functional Keras model, ms / step", step["plain_ms"], 1),
        ("`GBlendModel`, ms / step", step["gblend_ms"], 1),
        ("`GBlendModel` step / plain step", step["gblend_over_plain"], 3),
        ("same, CPU time", step["gblend_over_plain_cpu"], 3),
        (f"naive run ({run['epochs']} epochs), s", run["naive_s"], 2),
        ("in-situ G-Blend run, s", run["in_situ_s"], 2),
        ("in-situ run / naive run", run["in_situ_over_naive"], 3),
        ("same, CPU time", run["in_situ_over_naive_cpu"], 3),
        (
            f"floor / naive run (naive + {run['measurements']} forward passes "
            "over T' and V + one over V)",
            run["floor_over_naive"],
            3,
        ),
        (
            "naive run + the callback's own time / naive run",
            run["callback_over_naive"],
            3,
        ),
        ("one forward pass over T' and V, ms", run["forward_ms"], 0),
    ]
    strategy = ", MirroredStrategy" if result["settings"].get("mirrored") else ""
    lines = [
        f"Backend {result['backend']}{strategy} (Keras {result['keras']}), "
        f"{result['settings']['rounds']} interleaved rounds, median (min - max); "
        f"load average {load['before'][0]:.2f} before, {load['after'][0]:.2f} after.",
        "",
        "| quantity | median (min - max) |",
        "|---|---|",
    ] + [f"| {name} | {cell(entry, digits=digits)} |" for name, entry, digits in rows]
    return "\n".join(lines) + "\n"


def _cpu(run):
    cpu = run.get("in_situ_over_naive_cpu")
    return f"; CPU {cpu['median']:.3f}" if cpu else ""


def _callback(run):  # Absent from files written before it was measured.
    entry = run.get("callback_over_naive")
    return cell(entry, digits=3) if entry else "-"


def combined_table(results):
    """One row per backend: its own cost (vs TensorFlow) and the package's."""
    base = next((r for r in results if r["backend"] == "tensorflow"), results[0])[
        "step"
    ]["plain_ms"]["median"]
    lines = [
        "| backend | plain Keras ms / step | plain step / TensorFlow's | "
        "`GBlendModel` step / plain step | in-situ run / naive run | "
        "floor / naive run | naive + callback / naive run |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        step, run = r["step"], r["run"]
        name = r["backend"] + (" (Mirrored)" if r["settings"].get("mirrored") else "")
        lines.append(
            f"| {name} | {step['plain_ms']['median']:.1f} "
            f"| {step['plain_ms']['median'] / base:.2f} "
            f"| {cell(step['gblend_over_plain'], digits=3)} "
            f"| {cell(run['in_situ_over_naive'], digits=3)}{_cpu(run)} "
            f"| {cell(run['floor_over_naive'], digits=3)} "
            f"| {_callback(run)} |"
        )
    return "\n".join(lines) + "\n"
