"""Timing helper shared by the benchmarks."""

from __future__ import annotations

import statistics
import time


def median_seconds(fn, runs: int, setup=None, warmup: int = 0) -> float:
    """Median wall time of ``fn()`` over ``runs`` calls (``setup()`` untimed before each)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        if setup:
            setup()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
