"""Builds the Celery canvases of a run: pure functions from a saga definition to signatures."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from celery import chain, current_app, signature
from celery.canvas import Signature

from sagas.conf import sagas_settings

if TYPE_CHECKING:
    from sagas.definitions import Saga, Step

# Framework tasks; the per-step tasks are named after the saga and step (docs/internals.md, "Publishing after
# commit and Celery settings").
ON_STEP_FAILURE = "sagas.on_step_failure"
ON_COMPENSATION_FAILURE = "sagas.on_compensation_failure"
DEADLINE_CHECK = "sagas.check_deadline"
WAIT_CHECK = "sagas.check_wait"  # a Wait step's timeout
CHILD_SETTLED = "sagas.child_settled"  # a child run finished: its parent's SubSaga step moves on
# A deadline check is never held longer than this (seconds): Redis hands a message held past its
# visibility timeout to another worker, so long waits are taken in hops.
DEADLINE_CHECK_MAX_DELAY = 300.0


def step_task_name(saga_name: str, step: str) -> str:
    return f"saga.{saga_name}.{step}"


def compensation_task_name(saga_name: str, step: str) -> str:
    return f"saga.{saga_name}.{step}.compensate"


def _routing() -> dict[str, Any]:
    queue = sagas_settings.QUEUE
    return {"queue": queue} if queue else {}


def _time_limits(step: Step) -> dict[str, Any]:
    if step.timeout is None:
        return {}
    return {"soft_time_limit": step.timeout, "time_limit": step.timeout + sagas_settings.TIME_LIMIT_GRACE}


def step_limits(step: Step) -> tuple[float | None, float | None]:
    """A step's own (soft, hard) time limits: its ``timeout`` and the hard limit after the grace, else the
    app's task limits (None: no limit)."""
    if step.timeout is not None:
        return float(step.timeout), float(step.timeout + sagas_settings.TIME_LIMIT_GRACE)
    return _app_limits()


@functools.cache
def _app_limits() -> tuple[float | None, float | None]:
    # Read once per process: Celery's configuration lookups cost more than the rest of the step's bookkeeping.
    conf = current_app.conf
    soft, hard = conf.task_soft_time_limit, conf.task_time_limit
    return (float(soft) if soft else None, float(hard) if hard else None)


def message_limits(saga: type[Saga], step: Step) -> dict[str, Any]:
    """The limits a step's message carries. An eager saga's message may carry the steps after it too: it gets
    their hard limits added up (each step's own are enforced in process), or none if one of them has none."""
    if not saga.is_eager():
        return _time_limits(step)
    hards = [step_limits(s)[1] for s in saga.steps[saga.steps.index(step) :]]
    if any(hard is None for hard in hards):
        return {}
    budget = sum(hard for hard in hards if hard is not None)
    return {"soft_time_limit": budget, "time_limit": budget + sagas_settings.TIME_LIMIT_GRACE}


def _task(name: str, *args: Any, **options: Any) -> Signature:
    # Immutable: a task never receives its predecessor's return value; ids travel, never payloads.
    return signature(name, args=args, immutable=True, options={**_routing(), **options})


def step_task_id(run_id: str, step: str, attempt: int) -> str:
    """The Celery task id of one attempt of a step: the same run, step and attempt give the same id, so
    a step row links to its task, its TaskResult and its Flower page."""
    return f"{run_id}:{step}:{attempt}"


def compensation_task_id(run_id: str, step: str, round_: int, attempt: int) -> str:
    """The task id of one compensation attempt; ``round_`` counts operator retries (1 at first)."""
    return f"{run_id}:{step}:compensate:{round_}.{attempt}"


def compensation_attempt_of(task_id: str) -> tuple[int, int] | None:
    """The (round, attempt) a compensation task id names; None for an id not made by ``compensation_task_id``."""
    head, _, tail = task_id.rpartition(":")
    round_, _, attempt = tail.partition(".")
    if not head.endswith(":compensate") or not (round_.isdigit() and attempt.isdigit()):
        return None
    return int(round_), int(attempt)


def step_task(saga: type[Saga], run_id: str, step: Step, attempt: int) -> Signature:
    """One attempt of a forward step, with the errback that reports its failure."""
    return _task(
        step_task_name(saga.name, step.name),
        run_id,
        step.name,
        task_id=step_task_id(run_id, step.name, attempt),
        **message_limits(saga, step),
    ).on_error(_task(ON_STEP_FAILURE, run_id, step.name))


def forward_canvas(saga: type[Saga], run_id: str, steps: Sequence[Step], first_attempt: int = 1) -> Signature:
    """``chain(step...)`` for a saga whose steps form a sequence; every step carries the errback that reports
    its failure. The first step's task is its attempt ``first_attempt``; the others have not run yet. The
    last step's success completes the run in its own transaction."""
    tasks = [step_task(saga, run_id, step, first_attempt if index == 0 else 1) for index, step in enumerate(steps)]
    return chain(*tasks)


def start_canvases(saga: type[Saga], run_id: str, step: Step, attempt: int) -> Signature:
    """What to publish to (re)start ``step`` at ``attempt``.

    A sequence runs as one chain from that step to the end. In a graph each step is a task of its own:
    the run's tables start a step once every step it depends on has succeeded (fan-in by our rows, not by
    a chord counter in the result backend), so parallel branches are separate messages.
    """
    if saga.is_graph():
        return step_task(saga, run_id, step, attempt)
    return forward_canvas(saga, run_id, saga.steps[saga.steps.index(step) :], first_attempt=attempt)


def ready_steps(saga: type[Saga], succeeded: set[str], pending: set[str]) -> list[str]:
    """The pending steps whose dependencies have all succeeded, in declaration order."""
    dependencies = saga.dependencies()
    return [s.name for s in saga.steps if s.name in pending and dependencies[s.name] <= succeeded]


def compensation_task(saga: type[Saga], run_id: str, step: str, task_id: str) -> Signature:
    """The task that undoes one step; the run's tables decide what is scheduled after it."""
    options = {"task_id": task_id, **_time_limits(saga.step(step))}
    task = _task(compensation_task_name(saga.name, step), run_id, step, **options)
    return task.on_error(_task(ON_COMPENSATION_FAILURE, run_id, step))


def deadline_check(run_id: str) -> Signature:
    return _task(DEADLINE_CHECK, run_id)


def wait_check(run_id: str, step: str) -> Signature:
    return _task(WAIT_CHECK, run_id, step)


def child_settled(parent_id: str, step: str) -> Signature:
    return _task(CHILD_SETTLED, parent_id, step)


def compensation_stages(saga: type[Saga], completed: Sequence[str]) -> list[list[str]]:
    """The order in which the compensations of ``completed`` steps (given in order of completion) run.

    Higher ``priority`` first. Within one priority, a step is undone only after every step that depends on
    it (reverse dependency order, which for a plain sequence is the reverse order of completion); steps
    that do not depend on each other form one stage and are undone in parallel.
    """
    ancestors = saga.ancestors()
    position = {name: index for index, name in enumerate(completed)}
    priority = {name: saga.step(name).priority for name in completed}
    stages: list[list[str]] = []
    for level in sorted(set(priority.values()), reverse=True):
        remaining = [name for name in completed if priority[name] == level]
        while remaining:
            # Nothing still to undo depends on these: they may go now, together.
            ready = [n for n in remaining if not any(n in ancestors[other] for other in remaining if other != n)]
            stages.append(sorted(ready, key=lambda n: -position[n]))
            remaining = [n for n in remaining if n not in ready]
    return stages
