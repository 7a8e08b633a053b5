"""Helpers shared by the benchmark scripts: the machine description and a timer."""

from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable


def machine() -> str:
    """CPU model, core count and Python version, for the RESULTS.md tables."""
    info = Path("/proc/cpuinfo")
    lines = info.read_text().splitlines() if info.exists() else []
    cpu = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
               platform.processor() or "cpu")
    return (f"{platform.machine()}, {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"{platform.system()}")


def timed(fn: Callable[[], object], repeat: int = 5) -> tuple[float, float]:
    """Median and best wall seconds of ``repeat`` calls of ``fn``."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)
