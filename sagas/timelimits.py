"""A step's own time limits, enforced inside the process that runs it: what an eager saga's steps run under.

Celery's pool enforces one pair of limits per message (the soft one by a signal to the pool process, the hard
one by killing it). An eager saga's message may carry several steps, so each step's own limits are enforced
here, with a timer signal, and the message's limits (the budget of the steps it may carry) stay as a backstop.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded


def enforceable() -> bool:
    """A timer signal reaches only the main thread: pools that run tasks in threads cannot use it."""
    return threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")


@contextmanager
def limits(soft: float | None, hard: float | None) -> Iterator[None]:
    """Raise SoftTimeLimitExceeded ``soft`` seconds in, and TimeLimitExceeded at ``hard`` (the code did not stop
    at the soft limit), in the code run inside; nothing when neither is set or no timer signal can be used."""
    if (soft is None and hard is None) or not enforceable():
        yield
        return
    started = time.monotonic()
    deadlines = sorted((at, kind) for at, kind in ((soft, "soft"), (hard, "hard")) if at is not None)

    def arm() -> None:
        if deadlines:
            signal.setitimer(signal.ITIMER_REAL, max(0.001, deadlines[0][0] - (time.monotonic() - started)))

    def expired(signum: int, frame: FrameType | None) -> None:
        at, kind = deadlines.pop(0)
        arm()
        if kind == "soft":
            raise SoftTimeLimitExceeded(f"soft time limit ({at:g}s) exceeded")
        raise TimeLimitExceeded(at)

    previous = signal.signal(signal.SIGALRM, expired)
    arm()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
