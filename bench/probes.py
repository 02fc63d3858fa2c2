"""What the throughput benchmark reads besides its own clock: worker memory from /proc, Redis command
counts, percentiles."""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants (Linux /proc)."""
    pids, index = [root], 0
    while index < len(pids):
        pid = pids[index]
        index += 1
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                with contextlib.suppress(OSError):
                    pids += [int(child) for child in (task / "children").read_text().split()]
    return pids


def rss_bytes(pids: Sequence[int]) -> int:
    """Resident memory of ``pids`` added up (pages shared after fork count once per process, as in ps)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_BYTES
    return total


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU time ``pids`` and their exited children used so far (Linux /proc). A process that
    exited counts in its parent's children's time once reaped (PostgreSQL's backends in the postmaster's, pool
    processes in the worker's), so give whole process trees."""
    ticks = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += sum(int(value) for value in fields[11:15])  # utime, stime, cutime, cstime (stat 14-17)
    return ticks / CLOCK_TICKS


def pids_named(name: str) -> list[int]:
    """Every process whose command name is ``name`` (e.g. every PostgreSQL backend: ``postgres``)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == name:
                    found.append(int(entry.name))
    return found


class RssSampler:
    """Samples the resident memory of named groups of process trees every ``interval`` seconds, and keeps
    the peak of each group since the last ``reset``."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]], interval: float = 0.2) -> None:
        self.groups = groups  # name -> the root pids of its workers (they may be restarted)
        self.interval = interval
        self.peaks: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def measure(self, group: str) -> int:
        return rss_bytes([pid for root in self.groups[group]() for pid in process_tree(root)])

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for group in self.groups:
                value = self.measure(group)
                with self._lock:
                    self.peaks[group] = max(self.peaks.get(group, 0), value)

    def start(self) -> None:
        self._thread.start()

    def reset(self) -> None:
        with self._lock:
            self.peaks = {group: self.measure(group) for group in self.groups}

    def peak(self, group: str) -> int:
        with self._lock:
            return max(self.peaks.get(group, 0), self.measure(group))

    def stop(self) -> None:
        self._stop.set()


def redis_commands(client: Any) -> dict[str, int]:
    """Calls per command since the Redis server started (INFO commandstats): the whole server, every db."""
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(values["calls"]) for name, values in stats.items()}


def diff(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    keys = set(after) | set(before)
    changes = {key: after.get(key, 0) - before.get(key, 0) for key in keys}
    return {key: value for key, value in sorted(changes.items()) if value}


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` in 0..1) of ``values``."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max of one figure over the rounds."""
    clean = [v for v in values if v == v]  # drop NaN
    if not clean:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan")}
    return {"median": statistics.median(clean), "min": min(clean), "max": max(clean)}
