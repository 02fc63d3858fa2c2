"""The infrastructure soak's faults: their kinds, a schedule drawn from the seed, and the log of what was done."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

KINDS = (
    "kill_pool",  # SIGKILL of one pool process of a worker (Celery starts another)
    "kill_worker",  # SIGKILL of a whole worker, pool and all (the soak starts another)
    "pg_restart_fast",  # pg_ctl restart -m fast
    "pg_restart_immediate",  # pg_ctl restart -m immediate: a crash, then WAL recovery
    "pg_terminate",  # pg_terminate_backend of every worker connection
    "redis_restart",  # redis-server shut down and started again, its AOF replayed: data kept
    "redis_wipe",  # redis-server killed and its files deleted: queues, leases, attempt counts gone
    "pg_latency",  # every chunk between workers and PostgreSQL delayed, for a while
    "redis_latency",
    "pg_stall",  # nothing forwarded between workers and PostgreSQL for a few seconds; connections stay open
    "redis_stall",
    "pg_cut",  # every worker connection to PostgreSQL reset
    "redis_cut",
)


@dataclass(frozen=True)
class Fault:
    """One fault: at ``at`` seconds into the soak; ``seconds`` of latency or stall (and ``delay`` per chunk)."""

    at: float
    kind: str
    seconds: float = 0.0
    delay: float = 0.0

    def __str__(self) -> str:
        if self.kind.endswith("_latency"):
            return f"{self.kind} {self.delay * 1000:.0f} ms for {self.seconds:.1f} s"
        if self.kind.endswith("_stall"):
            return f"{self.kind} {self.seconds:.1f} s"
        return self.kind


def schedule(seed: int, seconds: float, every: float, kinds: tuple[str, ...] = KINDS) -> list[Fault]:
    """Faults from 5 s into the soak to its end, about ``every`` seconds apart, the kinds dealt in shuffled rounds
    (each kind once a round) so that every kind comes about as often as the others."""
    rng = random.Random(f"faults:{seed}")
    faults: list[Fault] = []
    at = 5.0
    deck: list[str] = []
    while at < seconds:
        if not deck:
            deck = list(kinds)
            rng.shuffle(deck)
        kind = deck.pop()
        if kind.endswith("_latency"):
            faults.append(Fault(at, kind, seconds=rng.uniform(5, 20), delay=rng.uniform(0.02, 0.25)))
        elif kind.endswith("_stall"):
            faults.append(Fault(at, kind, seconds=rng.uniform(2, 12)))
        else:
            faults.append(Fault(at, kind))
        at += every * rng.uniform(0.5, 1.5)
    return faults


@dataclass(frozen=True)
class Inflicted:
    """A fault as it happened: when, and what it did (``detail``), or why it could not (``error``)."""

    fault: Fault
    started: datetime
    ended: datetime
    detail: str = ""
    error: str = ""


@dataclass
class FaultLog:
    entries: list[Inflicted] = field(default_factory=list)

    def add(self, entry: Inflicted) -> None:
        self.entries.append(entry)

    def counts(self) -> Counter[str]:
        """Faults inflicted, by kind (those that failed to be inflicted are not counted)."""
        return Counter(entry.fault.kind for entry in self.entries if not entry.error)

    def between(self, start: datetime, end: datetime) -> list[Inflicted]:
        return [entry for entry in self.entries if entry.ended >= start and entry.started <= end]


def summary(counts: Counter[str]) -> str:
    """``kind:count,...`` in the order of KINDS, every kind named (0 when it never came)."""
    return ",".join(f"{kind}:{counts.get(kind, 0)}" for kind in KINDS)
