"""Builds the Celery canvases of a run: pure functions from a saga definition to signatures."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from celery import chain, signature
from celery.canvas import Signature

from sagas.conf import sagas_settings

if TYPE_CHECKING:
    from sagas.definitions import Saga, Step

# Framework tasks; the per-step tasks are named after the saga and step (ARCHITECTURE §6.7).
FINISH_RUN = "sagas.finish_run"
ON_STEP_FAILURE = "sagas.on_step_failure"
FINISH_COMPENSATION = "sagas.finish_compensation"


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


def _task(name: str, *args: Any, **options: Any) -> Signature:
    # Immutable: a task never receives its predecessor's return value; ids travel, never payloads.
    return signature(name, args=args, immutable=True, options={**_routing(), **options})


def forward_canvas(saga: type[Saga], run_id: str, steps: Iterable[Step]) -> Signature:
    """``chain(step..., finish_run)``; every step carries the errback that starts compensation."""
    errback = _task(ON_STEP_FAILURE, run_id)
    tasks = [
        _task(step_task_name(saga.name, step.name), run_id, step.name, **_time_limits(step)).on_error(errback)
        for step in steps
    ]
    return chain(*tasks, _task(FINISH_RUN, run_id))


def compensation_order(saga: type[Saga], names: Iterable[str]) -> list[Step]:
    """The steps named, in the order their compensations run: highest ``priority`` first, then the
    reverse of declaration order."""
    wanted = set(names)
    indexed = [(index, step) for index, step in enumerate(saga.steps) if step.name in wanted]
    indexed.sort(key=lambda pair: (-pair[1].priority, -pair[0]))
    return [step for _, step in indexed]


def compensation_canvas(saga: type[Saga], run_id: str, steps: Iterable[Step]) -> Signature:
    """``chain(compensate..., finish_compensation)`` for ``steps`` in the order given."""
    tasks = [
        _task(compensation_task_name(saga.name, step.name), run_id, step.name, **_time_limits(step)) for step in steps
    ]
    return chain(*tasks, _task(FINISH_COMPENSATION, run_id))
