"""Timing and memory helpers of the benchmarks: what is timed, what is traced.

`bench_overhead.interleaved(after=...)` keeps work done on a run's result out
of the run's time (the floor's forward passes once sat inside the in-situ run's
time); `bench_timing.RssSampler` gives the memory trace behind "flat over the
estimates".
"""

import time

import numpy as np
import pytest

from tools import bench_overhead, bench_timing


def test_work_after_a_variant_is_not_in_its_time():
    seen = []
    seconds = bench_overhead.interleaved(
        {"run": lambda: "model", "other": lambda: None},
        2,
        after={"run": lambda result: (seen.append(result), time.sleep(0.3))},
    )
    assert seen == ["model", "model"]  # called with what the variant returned
    assert max(seconds["run"]) < 0.1 and max(seconds["other"]) < 0.1


@pytest.mark.skipif(bench_timing.rss_mib() is None, reason="needs /proc (Linux)")
def test_rss_quarters_show_memory_kept_and_memory_released():
    kept = []
    with bench_timing.RssSampler(interval=0.01) as growing:
        for _ in range(4):
            time.sleep(0.1)
            kept.append(np.ones(32 * 2**20 // 8))  # 32 MiB, touched, kept
    first, *_, last = growing.quarters()
    assert last - first > 60  # At least two of the 32 MiB blocks came after 25%.

    with bench_timing.RssSampler(interval=0.01) as flat:
        for _ in range(4):
            time.sleep(0.1)
            block = np.ones(8 * 2**20 // 8)  # 8 MiB, allocated and freed each time
            del block
    quarters = flat.quarters()
    assert len(quarters) == 4
    assert max(quarters) - min(quarters) < 24  # Not 4 x 8 MiB piled up.
