"""Timing helpers of `tools/bench.py`: interleaved rounds, ratios, peak memory."""

import gc
import os
import platform
import resource
import statistics
import threading
import time

import keras
import tensorflow as tf


def fresh_session(seed=0):
    """A fresh Keras session and every RNG seeded: each round starts alike."""
    keras.backend.clear_session()
    gc.collect()
    keras.utils.set_random_seed(seed)


def interleaved(variants, repeats, reset=True, after=None):
    """Runs every variant once per round, flipping the order every round.

    Returns:
        A dict from variant name to `{"wall": [...], "cpu": [...]}`: seconds of
        wall-clock and of this process's CPU time (all threads) per round. CPU
        time is less disturbed by other processes on a shared machine.
    """
    names = list(variants)
    seconds = {name: {"wall": [], "cpu": []} for name in names}
    for round_ in range(repeats):
        for name in names if round_ % 2 == 0 else names[::-1]:
            if reset:
                fresh_session()
            gc.collect()
            wall, cpu = time.perf_counter(), time.process_time()
            variants[name]()
            seconds[name]["cpu"].append(time.process_time() - cpu)
            seconds[name]["wall"].append(time.perf_counter() - wall)
            if after:
                after(name)
            print(f"  {name}: {seconds[name]['wall'][-1]:.3f} s", flush=True)
    return seconds


def summary(values):
    return {
        "values": [round(v, 6) for v in values],
        "median": round(statistics.median(values), 6),
        "min": round(min(values), 6),
        "max": round(max(values), 6),
    }


def variants(seconds, scale=1.0):
    return {
        name: {
            clock: summary([v / scale for v in values])
            for clock, values in clocks.items()
        }
        for name, clocks in seconds.items()
    }


def ratio(seconds, numerator, denominator, target=None):
    """Per-round wall-time ratios (and CPU-time ratios under `cpu`)."""

    def ratios(clock):
        pairs = zip(seconds[numerator][clock], seconds[denominator][clock])
        return [a / b for a, b in pairs]

    result = {"ratio": f"{numerator} / {denominator}", **summary(ratios("wall"))}
    result["cpu"] = summary(ratios("cpu"))
    if target is not None:
        result.update(target=target, met=bool(result["median"] <= target))
    return result


def _proc_status_mib(key):
    """A `/proc/self/status` memory field (`VmHWM`, `VmRSS`) in MiB; None off Linux."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(f"{key}:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def peak_rss_mib():
    """Peak RSS of this process: `VmHWM` on Linux, else `ru_maxrss`.

    `ru_maxrss` of a child started by fork + exec starts at the parent's RSS at
    fork time (Linux keeps the larger of the two), so it over-reports small
    children of a large parent; `VmHWM` belongs to the new address space only.
    """
    peak = _proc_status_mib("VmHWM")
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return peak


def rss_mib():
    """Resident memory of this process now, in MiB (`VmRSS`; None off Linux)."""
    return _proc_status_mib("VmRSS")


class RssSampler:
    """Samples `rss_mib()` in a thread while the `with` block runs.

    `quarters()` gives the RSS at 25, 50, 75 and 100% of the block's time: flat
    when a run's repeated work (an estimate of the exact scheme, say) keeps no
    memory from one repetition to the next.

    Example:

    >>> with RssSampler(interval=0.01) as sampler:
    ...     time.sleep(0.05)
    >>> len(sampler.quarters()) == 4 or rss_mib() is None
    True
    """

    def __init__(self, interval=0.25):
        self.interval, self.samples = interval, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        start = time.perf_counter()
        while True:
            rss = rss_mib()
            if rss is not None:
                self.samples.append((time.perf_counter() - start, rss))
            if self._stop.wait(self.interval):
                return

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def quarters(self):
        if not self.samples:
            return []
        end = self.samples[-1][0]
        return [
            round(next(r for t, r in self.samples if t >= q * end), 1)
            for q in (0.25, 0.5, 0.75, 1.0)
        ]


def machine():
    """The machine and library versions, for the report."""
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
    }


def print_table(results):
    """Prints every ratio of the report, and the peak memory, as a markdown table."""
    print("\n| comparison | wall median | min | max | CPU median | target | met |")
    print("|---|---|---|---|---|---|---|")
    for section in results.values():
        if not isinstance(section, dict):
            continue
        for entry in [section] + [v for v in section.values() if isinstance(v, dict)]:
            if "ratio" in entry:
                print(
                    f"| {entry['ratio']} | {entry['median']:.3f} | {entry['min']:.3f}"
                    f" | {entry['max']:.3f} | {entry['cpu']['median']:.3f}"
                    f" | {entry.get('target', '-')}"
                    f" | {entry.get('met', '-')} |"
                )
    memory = results.get("memory", {}).get("variants", {})
    for name, entry in memory.items():
        if "skipped" in entry or "error" in entry:
            print(
                f"| peak RSS {name} | {'skipped' if 'skipped' in entry else 'error'} |"
            )
            continue
        quarters = " / ".join(str(r) for r in entry.get("rss_mib_quarters", []))
        over = f"; RSS at 25/50/75/100% of the run {quarters} MiB" if quarters else ""
        print(f"| peak RSS {name} | {entry['peak_rss_mib']} MiB{over} |")
