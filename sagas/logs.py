"""What the framework's log records carry besides their message: the saga, run, step, attempt and Celery task."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sagas.models import SagaRun


def fields(
    run: SagaRun | None = None,
    *,
    run_id: Any = None,
    step: str | None = None,
    attempt: int | None = None,
    **more: Any,
) -> dict[str, Any]:
    """The ``extra=`` of a log call: ``saga``, ``run_id``, ``step``, ``attempt``, the id of the Celery task being
    executed (``task_id``) and ``more``, as record attributes a JSON formatter emits as fields (docs/configuration.md
    has a recipe). Values that are None are left out, so a record carries only what its event concerns."""
    values: dict[str, Any] = {}
    if run is not None:
        values["saga"], values["run_id"] = run.saga_name, str(run.pk)
    elif run_id is not None:
        values["run_id"] = str(run_id)
    if step:
        values["step"] = step
    if attempt is not None:
        values["attempt"] = attempt
    task_id = _current_task_id()
    if task_id:
        values["task_id"] = task_id
    values.update((key, value) for key, value in more.items() if value is not None)
    return values


def _current_task_id() -> str | None:
    from celery import current_task

    request = getattr(current_task, "request", None)
    task_id = getattr(request, "id", None)
    return str(task_id) if task_id else None
