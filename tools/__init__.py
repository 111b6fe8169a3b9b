"""Command-line tools: data builders, benchmarks, the plot command.

Run each from the repository root as a module, `python -m tools.<name>`
(`tools.plot_blend`, `tools.bench`, `tools.bench_overhead` (per backend),
`tools.bench_pipelines`, `tools.peer_torch`, `tools.bench_gpu` (all of them on a
GPU), `tools.bench_audio`'s section of `tools.bench`, `tools.baselines_bench`,
`tools.build_av_digits`, `tools.build_mfeat`); they import `experiments` and
each other as packages. BENCHMARKS.md holds their commands and results.
"""
