"""Self-checks an instance runs on itself, like Consul's checks: event-loop lag, memory, disk.

An instance that fails one marks itself unhealthy in the registry (clients stop choosing it) and
healthy again when it recovers; it keeps serving calls already routed to it. The decision is pure
(``evaluate``); ``HealthMonitor`` is the thin asyncio loop that samples and reports changes.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class HealthThresholds:
    """``None`` switches a check off. Lag: how late a timer may fire (a blocked or saturated loop).
    Memory: resident set size. Disk: free bytes at ``disk_path``."""

    max_loop_lag: float | None = 1.0
    max_rss_bytes: int | None = None
    min_disk_free_bytes: int | None = None
    disk_path: str = "/"
    interval: float = 1.0


@dataclass(frozen=True)
class Sample:
    loop_lag: float
    rss_bytes: int
    disk_free_bytes: int


def evaluate(sample: Sample, t: HealthThresholds) -> list[str]:
    """Reasons the instance is unhealthy; empty when it is healthy."""
    reasons = []
    if t.max_loop_lag is not None and sample.loop_lag > t.max_loop_lag:
        reasons.append(f"event loop lag {sample.loop_lag * 1000:.0f} ms > {t.max_loop_lag * 1000:.0f} ms")
    if t.max_rss_bytes is not None and sample.rss_bytes > t.max_rss_bytes:
        reasons.append(f"memory {sample.rss_bytes >> 20} MiB > {t.max_rss_bytes >> 20} MiB")
    if t.min_disk_free_bytes is not None and sample.disk_free_bytes < t.min_disk_free_bytes:
        reasons.append(f"disk free {sample.disk_free_bytes >> 20} MiB < {t.min_disk_free_bytes >> 20} MiB")
    return reasons


def rss_bytes() -> int:
    """Current resident set size (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class HealthMonitor:
    def __init__(
        self,
        thresholds: HealthThresholds,
        on_change: Callable[[bool, list[str]], Awaitable[None]],
        rss: Callable[[], int] = rss_bytes,
        disk_free: Callable[[str], int] = lambda path: shutil.disk_usage(path).free,
    ) -> None:
        self.thresholds = thresholds
        self._on_change = on_change
        self._rss = rss
        self._disk_free = disk_free
        self.healthy = True
        self.reasons: list[str] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        interval = self.thresholds.interval
        while True:
            before = time.monotonic()
            await asyncio.sleep(interval)
            lag = max(0.0, time.monotonic() - before - interval)
            await self.report(lag)

    async def report(self, loop_lag: float) -> None:
        t = self.thresholds
        sample = Sample(
            loop_lag=loop_lag,
            rss_bytes=self._rss() if t.max_rss_bytes is not None else 0,
            disk_free_bytes=self._disk_free(t.disk_path) if t.min_disk_free_bytes is not None else 0,
        )
        reasons = evaluate(sample, t)
        healthy = not reasons
        self.reasons = reasons
        if healthy != self.healthy:
            self.healthy = healthy
            await self._on_change(healthy, reasons)
