"""Small timing helpers shared by the benchmark scripts: medians and tail percentiles."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Timing:
    """Wall-clock samples of one repeated call, in milliseconds."""

    samples_ms: tuple[float, ...]

    @property
    def p50(self) -> float:
        """Median in ms."""
        return float(np.median(self.samples_ms))

    @property
    def p99(self) -> float:
        """99th percentile in ms."""
        return float(np.percentile(self.samples_ms, 99))

    @property
    def mean(self) -> float:
        """Mean in ms."""
        return float(np.mean(self.samples_ms))


def time_calls(fn: Callable[[int], object], repeats: int, warmup: int = 2) -> Timing:
    """Call ``fn(i)`` ``warmup`` times untimed, then ``repeats`` times timed."""
    for i in range(warmup):
        fn(i)
    samples = []
    for i in range(repeats):
        t0 = time.perf_counter()
        fn(i)
        samples.append((time.perf_counter() - t0) * 1e3)
    return Timing(tuple(samples))


def load_average() -> float:
    """One-minute load average (other users of the 2 cores make figures noisy)."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def rss_mb() -> float:
    """Resident set size of this process in MiB (Linux /proc; nan elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return float("nan")


def table(header: list[str], rows: list[list[object]]) -> str:
    """A markdown table."""
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)
