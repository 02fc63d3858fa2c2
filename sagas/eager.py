"""Eager dispatch: the pool process that just recorded a step's success runs the chain's next step itself,
instead of publishing it and waiting for a worker to take it from the broker (Temporal's eager activities).

Opt-in per saga (``Saga.eager = True``) or for every sequence (``SAGAS["EAGER"]``). The next step still is its
own attempt of its own registered task: its own claim, lease, attempt count, time limits (enforced in process by
``sagas.timelimits``), retry and errback. It is published as usual when it goes to another queue, when its hard
limit does not fit in what the pool allows the current message, when timers cannot be used in this process, or
when the worker is shutting down. The message being processed stays unacknowledged until the eager steps are
done, so a worker killed in the middle of one redelivers it: its step is found done and the next one is claimed
again as its next attempt, as when a published step's worker is killed.
"""

from __future__ import annotations

import logging
import time
from ctypes import c_bool
from multiprocessing.sharedctypes import RawValue
from typing import TYPE_CHECKING, Any

from celery import Task, signature
from celery.signals import worker_init, worker_shutting_down

from sagas import engine, logs, timelimits

if TYPE_CHECKING:
    from celery.canvas import Signature

    from sagas.definitions import Saga

logger = logging.getLogger(__name__)

# Set by the worker's main process when it starts shutting down; created before the pool forks, so every pool
# process reads the same flag.
_stopping: Any = None


def _share_stopping_flag(**kwargs: Any) -> None:
    global _stopping
    _stopping = RawValue(c_bool, False)


def _worker_stops(**kwargs: Any) -> None:
    if _stopping is not None:
        _stopping.value = True


worker_init.connect(_share_stopping_flag, weak=False)
worker_shutting_down.connect(_worker_stops, weak=False)


def shutting_down() -> bool:
    return bool(_stopping is not None and _stopping.value)


def mark_started(task: Task) -> None:
    """Note when the pool started this message: what is left of its time limits is reckoned from it."""
    task.request.sagas_started = time.monotonic()


def message_limits(task: Task) -> tuple[float | None, float | None]:
    """The (soft, hard) limits the pool enforces for the message being processed: the message's, else the
    task's, else the app's (None: no limit)."""
    hard, soft = task.request.timelimit or (None, None)
    hard = hard or task.time_limit or task.app.conf.task_time_limit
    soft = soft or task.soft_time_limit or task.app.conf.task_soft_time_limit
    return (float(soft) if soft else None, float(hard) if hard else None)


def _message_left(task: Task) -> tuple[float, float]:
    """Seconds left before the pool's soft signal and hard kill for the message being processed (inf: none)."""
    soft, hard = message_limits(task)
    elapsed = time.monotonic() - getattr(task.request, "sagas_started", time.monotonic())
    return (
        soft - elapsed if soft is not None else float("inf"),
        hard - elapsed if hard is not None else float("inf"),
    )


def _queue_of(task: Task, following: Signature) -> str | None:
    queue = following.options.get("queue")
    if queue is None:
        route = task.app.amqp.router.route(dict(following.options), following.task, following.args)
        queue = route.get("queue")
    name = getattr(queue, "name", queue)
    return str(name) if name is not None else None


def next_step(task: Task, saga: type[Saga], run_id: str) -> tuple[Signature, str] | None:
    """The next link of the chain and its step, when this process may run it eagerly; None (and the reason
    logged) when it must be published."""
    chain = task.request.chain
    if not chain:
        return None
    following = signature(chain[-1], app=task.app)
    args = list(following.args or ())
    if len(args) != 2 or args[0] != run_id or following.task != engine.step_task_name(saga.name, args[1]):
        return None  # not a step of this run (the legacy finish task): Celery publishes it
    step = saga.step(args[1])
    reason = ""
    if shutting_down():
        reason = "the worker is shutting down"
    elif not timelimits.enforceable():
        reason = "this pool cannot enforce a step's time limits in process"
    elif _queue_of(task, following) != (task.request.delivery_info or {}).get("routing_key"):
        reason = "it goes to another queue"
    else:
        soft_left, hard_left = _message_left(task)
        _, own_hard = engine.step_limits(step)
        if own_hard is None or own_hard > min(soft_left, hard_left):
            reason = "its time limit does not fit in what is left of this message's"
    if reason:
        logger.debug(
            "saga run %s: step %s published, not run eagerly: %s",
            run_id,
            step.name,
            reason,
            extra=logs.fields(run_id=run_id, step=step.name),
        )
        return None
    chain.pop()
    return following, step.name


def publish_retry(task: Task, following: Signature, *, delay: float, task_id: str, exc: BaseException) -> None:
    """The eager step failed an attempt that is retried: its next attempt is published as Celery's retry of it
    would be (same task, errback and the rest of the chain), and the result backend records the retry."""
    chain = task.request.chain or None
    task.request.chain = None  # the rest of the chain goes with the retry
    task.backend.mark_as_retry(following.options.get("task_id"), exc)
    following.clone(options={"task_id": task_id}).apply_async(countdown=delay, chain=chain)


def fail(task: Task, following: Signature, exc: BaseException) -> None:
    """The eager step failed for good: the chain stops there, the result backend records the failure, and the
    step's errbacks are published, as the worker would do for a published step."""
    task.request.chain = None
    task.backend.mark_as_failure(following.options.get("task_id"), exc, call_errbacks=False)
    for errback in following.options.get("link_error") or []:
        signature(errback, app=task.app).apply_async()
