"""Best-of timing, the one measure every benchmark here reports."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import httpx

T = TypeVar("T")


def best_of(fn: Callable[[], T], repeats: int = 1) -> tuple[float, T]:
    """Smallest wall time of ``repeats`` calls (seconds) and the last call's result."""
    best = float("inf")
    for _ in range(max(repeats, 1)):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def cpu_seconds(sessions: set[int]) -> float:
    """User + system CPU of every process in these sessions (Linux /proc): a server's cost,
    robust to other load on the machine."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) in sessions:  # field 6 of proc(5): the session id
            total += int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks
    return total / os.sysconf("SC_CLK_TCK")


def get_latencies(http: httpx.Client, url: str, n: int) -> list[float]:
    """Seconds each of ``n`` GETs of ``url``, one after another, took (each must succeed)."""
    out = []
    for _ in range(n):
        t = time.perf_counter()
        http.get(url).raise_for_status()
        out.append(time.perf_counter() - t)
    return out
