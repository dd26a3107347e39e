"""Repeated timing: warm-up calls excluded, median and interquartile range of the timed calls."""

from __future__ import annotations

import resource
import time
from pathlib import Path
from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Timing:
    median_s: float
    iqr_s: float  # 75th minus 25th percentile
    repeats: int
    warmup: int


def time_call(fn: Callable[[], object], *, warmup: int, repeats: int, sync: Callable[[], None] = lambda: None) -> Timing:
    """Call ``fn`` ``warmup`` times untimed, then ``repeats`` times, each timed alone with ``sync()``
    (device synchronisation) before the clock stops."""
    if warmup < 1 or repeats < 3:
        raise ValueError(f"need warmup >= 1 and repeats >= 3, got {warmup}, {repeats}")
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    q25, q50, q75 = np.percentile(times, [25, 50, 75])
    return Timing(float(q50), float(q75 - q25), repeats, warmup)


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mib() -> float:
    """Resident set size of this process now, MiB (``/proc/self/statm``; Linux)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20
