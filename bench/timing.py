"""Shared timing helpers for the benchmarks (wall time with CUDA synchronisation)."""
import json
import time
from pathlib import Path

import torch


def timed(fn) -> float:
    """Seconds one call of ``fn`` takes, with queued CUDA work finished before and after."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def best_times(cases: dict, repeat: int) -> dict:
    """Best wall time of each case; the cases are interleaved (round robin) so a change in machine
    load affects all of them alike."""
    for fn in cases.values():
        fn()                                                      # warm-up (caches, SVDs, allocator)
    best = {name: float("inf") for name in cases}
    for _ in range(repeat):
        for name, fn in cases.items():
            best[name] = min(best[name], timed(fn))
    return best


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
