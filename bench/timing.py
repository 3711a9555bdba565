"""Timing for the benchmarks: wall time with CUDA synchronisation, one statistic everywhere.

Every benchmark reports the **median** of its repeated wall times (``median_time``,
``median_times``; ``statistic`` says so in the printed output): a typical run's cost, robust to a
busy shared machine slowing a few repeats down.  Queued CUDA work is finished before and after
each timed call.
"""
import json
import statistics
import time
from pathlib import Path

import torch


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn) -> float:
    """Seconds one call of ``fn`` takes."""
    _sync()
    t0 = time.perf_counter()
    fn()
    _sync()
    return time.perf_counter() - t0


def median_time(fn, repeat: int, warmup: bool = True) -> float:
    """Median wall time of ``repeat`` calls of ``fn``, after one untimed warm-up call (caches,
    SVDs, allocator, kernels) unless ``warmup`` is False."""
    if warmup:
        fn()
    return statistics.median(timed(fn) for _ in range(repeat))


def median_times(cases: dict, repeat: int, warmup: bool = True) -> dict:
    """Median wall time of each case; the calls are interleaved (round robin) so a change in
    machine load affects all cases alike.  One untimed warm-up call of each first unless
    ``warmup`` is False."""
    if warmup:
        for fn in cases.values():
            fn()
    times = {name: [] for name in cases}
    for _ in range(repeat):
        for name, fn in cases.items():
            times[name].append(timed(fn))
    return {name: statistics.median(t) for name, t in times.items()}


def statistic(repeat: int) -> str:
    """How the times are summarised, for the printed output: 'median of 3'."""
    return f"median of {repeat}"


def device_label() -> str:
    """What the numbers were measured on, e.g. 'cuda (NVIDIA H200)' or 'cpu (2 threads)'."""
    if torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name()})"
    return f"cpu ({torch.get_num_threads()} threads)"


def write_json(path, data: dict):
    """Machine-readable results for bench/report.py (with the device and torch version)."""
    if path:
        data = {"device": device_label(), "torch": torch.__version__, **data}
        Path(path).write_text(json.dumps(data, indent=1))
