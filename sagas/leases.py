"""Step leases and attempt counters in Redis: which delivery runs a step now, and how many attempts started.

A forward step's claim writes nothing to PostgreSQL: it takes the step's lease (one delivery at a time), counts
the attempt (what stops a message that kills every worker it reaches), and the attempt's outcome is recorded with
its start in one statement. A run being stopped (cancelled, timed out, compensating) puts up a fence first: no
lease is granted while it stands, so whoever stops a run sees every step in flight in the leases it reads next.
A compensation's attempt holds a lease of its own, so a second copy of its message waits while it runs.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured

from sagas.breakers import redis_client, redis_url
from sagas.conf import sagas_settings
from sagas.states import StepStatus

if TYPE_CHECKING:
    from collections.abc import Iterable

    import redis

# Seconds a fence stands: longer than any transaction that stops a run, short enough that a claim refused by a
# fence left over from a rolled-back transaction is not held up for long.
FENCE_SECONDS = 30
# Attempt counters outlive any retry schedule of a step; a finished step deletes its own.
COUNTER_SECONDS = 7 * 24 * 3600

# KEYS: fence, lease, counter, and optionally the lease and counter of a step this process just finished.
# ARGV: the holder prefix, lease ms, counter seconds, the holder value to replace (a holder known to be dead) or
# "", "1" to pass the fence (else ""), and with the optional keys the finished step's holder value. Gives the
# finished step's lease back (as RELEASE "done" does), then returns {answer, number, holder}: ok with the
# attempt number, held with the lease's ms left and its holder, or fenced with the fence's ms left.
ACQUIRE = """
if KEYS[4] then
  if redis.call('GET', KEYS[4]) == ARGV[6] then redis.call('DEL', KEYS[4]) end
  redis.call('DEL', KEYS[5])
end
if ARGV[5] ~= '1' and redis.call('EXISTS', KEYS[1]) == 1 then
  return {'fenced', redis.call('PTTL', KEYS[1]), ''}
end
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[4] then
  return {'held', redis.call('PTTL', KEYS[2]), holder}
end
local attempt = redis.call('INCR', KEYS[3])
redis.call('EXPIRE', KEYS[3], ARGV[3])
redis.call('SET', KEYS[2], ARGV[1] .. '|' .. attempt, 'PX', ARGV[2])
return {'ok', attempt, ''}
"""

# KEYS: lease, counter. ARGV: holder, mode: "done" (the step is finished: forget its count too), "keep" (a
# retry follows: keep the count), "undo" (the attempt never started: take it back off the count).
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  if ARGV[2] == 'undo' then redis.call('DECR', KEYS[2]) end
end
if ARGV[2] == 'done' then redis.call('DEL', KEYS[2]) end
return 1
"""

# KEYS: counter. ARGV: the lowest attempt number the count may have, counter seconds. Raises a count that Redis
# lost (a restart without persistence) to what PostgreSQL recorded.
FLOOR = """
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  return tonumber(ARGV[1])
end
return n
"""


class Answer(StrEnum):
    OK = "ok"  # the lease is this delivery's: run the attempt
    HELD = "held"  # another delivery holds the lease
    FENCED = "fenced"  # the run is being stopped: no attempt starts until its new state is committed


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds a step's lease: the worker host and process, the task, the attempt and when it started."""

    host: str
    pid: int
    task_id: str
    attempt: int
    started: float  # epoch seconds
    raw: str

    @classmethod
    def parse(cls, raw: str) -> Holder | None:
        parts = raw.split("|")
        try:
            return cls(parts[0], int(parts[1]), "|".join(parts[3:-1]), int(parts[-1]), float(parts[2]), raw)
        except (ValueError, IndexError):
            return None

    def is_dead(self) -> bool:
        """Whether the holder is a process of this host that no longer exists (a pool process killed mid-step):
        its lease can be taken over at once instead of waiting for it to expire."""
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False


@dataclass(frozen=True, slots=True)
class Handover:
    """The lease of a step whose success is committed, kept by the process that runs the next step of the same
    run at once (eager dispatch): its next ``acquire`` gives it back in the same round trip."""

    step: str
    value: str


@dataclass(frozen=True, slots=True)
class Lease:
    """What asking for a step's lease answered."""

    answer: Answer
    attempt: int = 0  # with OK: this attempt's number
    wait: float = 0.0  # with HELD or FENCED: seconds until the lease or fence lapses at the latest
    holder: Holder | None = None
    value: str = ""  # with OK: the lease's value, to release it with

    @property
    def granted(self) -> bool:
        return self.answer is Answer.OK


def client() -> redis.Redis:
    url = redis_url()
    if url is None:
        raise ImproperlyConfigured(
            "Saga steps need Redis for their leases and attempt counters: set SAGAS['REDIS_URL'] or REDIS_URL "
            "(the broker is used when it is Redis)."
        )
    return redis_client(url)


def _run_key(run_id: Any) -> str:
    # The run id in braces: every key of a run hashes to one Redis Cluster slot, as a multi-key script needs.
    return f"{sagas_settings.KEY_PREFIX}:run:{{{run_id}}}"


def fence_key(run_id: Any) -> str:
    return f"{_run_key(run_id)}:fence"


def lease_key(run_id: Any, step: str, *, compensation: bool = False) -> str:
    return f"{_run_key(run_id)}:{'compensation-lease' if compensation else 'lease'}:{step}"


def counter_key(run_id: Any, step: str, *, compensation: bool = False) -> str:
    # A compensation's attempts are counted in PostgreSQL (its claim writes its start): its counter here only
    # serves the script, and goes with its lease.
    return f"{_run_key(run_id)}:{'compensation-attempts' if compensation else 'attempts'}:{step}"


_scripts: dict[tuple[int, str], Any] = {}


def _script(source: str) -> Any:
    key = (os.getpid(), source)
    if key not in _scripts:
        _scripts[key] = client().register_script(source)
    return _scripts[key]


def acquire(
    run_id: Any,
    step: str,
    *,
    task_id: str,
    seconds: float,
    previous: Handover | None = None,
    through_fence: bool = False,
    compensation: bool = False,
) -> Lease:
    """Take the step's lease for ``seconds`` and count the attempt; or say who holds it, or that the run is
    fenced. A holder that is a dead process of this host is replaced at once. ``previous``: a finished step's
    lease to give back first (whatever the answer). ``through_fence``: the stop the fence guarded is known to
    be committed (an attempt settling a step in doubt, sagas.services.doubt). ``compensation``: the lease of
    the step's compensation (one delivery at a time runs it too), which no fence holds back: a compensation
    runs only once its run stopped."""
    started = time.time()
    prefix = f"{socket.gethostname()}|{os.getpid()}|{started:.3f}|{task_id}"
    keys = [
        fence_key(run_id),
        lease_key(run_id, step, compensation=compensation),
        counter_key(run_id, step, compensation=compensation),
    ]
    handed_back: list[Any] = []
    if previous is not None:
        keys += [lease_key(run_id, previous.step), counter_key(run_id, previous.step)]
        handed_back = [previous.value]
    replace = ""
    passing = "1" if through_fence or compensation else ""
    for _ in range(2):
        answer, number, raw = _script(ACQUIRE)(
            keys=keys, args=[prefix, max(1, int(seconds * 1000)), COUNTER_SECONDS, replace, passing, *handed_back]
        )
        if answer == Answer.OK:
            return Lease(Answer.OK, attempt=int(number), value=f"{prefix}|{number}")
        holder = Holder.parse(raw) if raw else None
        if answer == Answer.HELD and holder is not None and holder.is_dead() and not replace:
            replace = holder.raw
            continue
        return Lease(Answer(answer), wait=max(0.0, int(number) / 1000), holder=holder)
    return Lease(Answer.HELD, wait=1.0)


def release(run_id: Any, step: str, value: str, *, mode: str, compensation: bool = False) -> None:
    """Give the lease back: ``done`` (the step finished; its count goes too), ``keep`` (a retry follows) or
    ``undo`` (the attempt never started, as when the breaker refused the call: it is taken off the count)."""
    keys = [lease_key(run_id, step, compensation=compensation), counter_key(run_id, step, compensation=compensation)]
    _script(RELEASE)(keys=keys, args=[value, mode])


def look_again_in(wait: float) -> float:
    """When a delivery that found a lease held (``wait``: seconds until it lapses at the latest) asks again: a
    tenth of what is left, at least a second, so a duplicate looks a few times, not continuously."""
    return round(min(wait, max(1.0, wait / 10)), 3) if wait > 0 else 1.0


def floor_attempts(run_id: Any, step: str, recorded: int) -> int:
    """The attempt count, raised to ``recorded`` + 1 if Redis lost it: the attempt number to use now."""
    return int(_script(FLOOR)(keys=[counter_key(run_id, step)], args=[recorded + 1, COUNTER_SECONDS]))


def fence(run_id: Any, steps: Iterable[str]) -> dict[str, Holder]:
    """Put up the run's fence, then read the leases of ``steps``: the ones in flight, by name. Whoever stops a
    run calls this under the run lock before deciding about its unfinished steps: a claim either took its lease
    before the fence (and is listed here) or is refused until the stop is committed."""
    names = list(steps)
    pipe = client().pipeline(transaction=False)
    pipe.set(fence_key(run_id), "1", ex=FENCE_SECONDS)
    if names:
        pipe.mget([lease_key(run_id, name) for name in names])
    replies = pipe.execute()
    return _live(names, replies[1]) if names else {}


def holders(run_id: Any, steps: Iterable[str]) -> dict[str, Holder]:
    """The live holders of the leases of ``steps`` (for display and the reaper), by name."""
    names = list(steps)
    return _live(names, client().mget([lease_key(run_id, name) for name in names])) if names else {}


def in_flight(run_id: Any, steps: Iterable[Any]) -> dict[str, Holder]:
    """The live holders among ``steps`` (step rows) that may have an attempt under way: pending or running."""
    return holders(run_id, [s.name for s in steps if s.status in (StepStatus.PENDING, StepStatus.RUNNING)])


def _live(names: list[str], raws: list[Any]) -> dict[str, Holder]:
    """The leases read for ``names`` whose holder is not a dead process of this host, by name."""
    found = {}
    for name, raw in zip(names, raws, strict=True):
        holder = Holder.parse(str(raw)) if raw else None
        if holder is not None and not holder.is_dead():
            found[name] = holder
    return found


def holder(run_id: Any, step: str, *, compensation: bool = False) -> Holder | None:
    """Whoever holds the step's lease, alive or not (a killed attempt's lease stays until it lapses)."""
    raw = client().get(lease_key(run_id, step, compensation=compensation))
    return Holder.parse(str(raw)) if raw else None


def started(run_id: Any, steps: Iterable[str]) -> dict[str, int]:
    """How many attempts of each of ``steps`` started, as counted in Redis (0 when none or forgotten)."""
    names = list(steps)
    if not names:
        return {}
    counts = client().mget([counter_key(run_id, name) for name in names])
    return {name: int(count or 0) for name, count in zip(names, counts, strict=True)}


def memory_key() -> str:
    return f"{sagas_settings.KEY_PREFIX}:memory-since"


def memory_since() -> float:
    """Epoch seconds since which this Redis has kept the saga keys. Set once, without expiry, by the first call
    after Redis started empty (the reaper makes one every tick): a Redis that lost its data (restarted without
    it, flushed) answers a later time, and every lease and attempt count of a run older than that may be gone."""
    pipe = client().pipeline(transaction=False)
    pipe.set(memory_key(), repr(time.time()), nx=True)
    pipe.get(memory_key())
    _, since = pipe.execute()
    return float(since)


def forget(run_id: Any, step: str, *, compensation: bool = False) -> None:
    """Drop a step's lease: its attempt was recorded as ended (killed, lost) by someone other than its holder."""
    client().delete(lease_key(run_id, step, compensation=compensation))
