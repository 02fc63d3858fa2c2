"""Why a run is where it is: probable causes read off its rows, its breakers and the workers, each with the
action that helps."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from celery import current_app
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from sagas import breakers, leases
from sagas.celeryconf import celery_setting
from sagas.conf import sagas_settings
from sagas.models import SagaRun, SagaStepRun
from sagas.registry import get_saga
from sagas.selectors import circuit_call, humanize_seconds, stuck
from sagas.services.forward import failed_forward
from sagas.states import ACTIVE_RUN_STATES, EventType, RunStatus, StepStatus
from sagas.workers import WorkerId


@dataclass(frozen=True, slots=True)
class Finding:
    cause: str  # a stable code: compensation_exhausted, step_over_timeout, breaker_open, no_worker, ...
    summary: str  # what is wrong, in a sentence
    action: str  # what a person can do about it
    task_id: str = ""  # the Celery task to look at, if one is to blame
    worker: str = ""  # the worker process that ran (or runs) it, as recorded: "celery@host pid 123"

    @property
    def flower(self) -> str:
        """The task's page in Flower, when ``SAGAS["FLOWER_URL"]`` is set."""
        base = str(sagas_settings.FLOWER_URL or "").rstrip("/")
        return f"{base}/task/{self.task_id}" if base and self.task_id else ""

    def as_json(self) -> dict[str, str]:
        return {**asdict(self), "flower": self.flower}


def diagnose(run: SagaRun, *, now: datetime | None = None, check_workers: bool = True) -> list[Finding]:
    """Probable causes for ``run``, most pressing first; empty when nothing looks wrong."""
    now = now or timezone.now()
    steps = list(run.steps.order_by("index"))
    try:
        saga = get_saga(run.saga_name, run.version)
    except LookupError:
        saga = None
    findings: list[Finding] = []
    if run.parked_reason:
        findings.append(
            Finding(
                "parked",
                run.parked_reason,
                f"Deploy code that has the step, then `manage.py saga_retry {run.pk} --reason ...`; "
                f"or undo its effects by hand and `manage.py saga_resolve`.",
            )
        )
    if saga is None:
        findings.append(
            Finding(
                "saga_not_in_code",
                f"Saga {run.saga_name} version {run.version} is not registered in this code.",
                "Keep the old saga class (with its version) deployed while runs of it exist.",
            )
        )
    findings += _exhausted_compensations(run, steps)
    findings += _failed_after_pivot(run, steps)
    if run.status in ACTIVE_RUN_STATES:
        findings += _over_timeout(run, steps, saga, now)
        findings += _circuit_waits(run, steps, saga, now)
        findings += _open_breakers(steps, saga)
        findings += _stale(run, now)
        if check_workers:
            findings += _no_worker()
    return findings


def _exhausted_compensations(run: SagaRun, steps: list[SagaStepRun]) -> list[Finding]:
    found = []
    for step in steps:
        if step.status != StepStatus.COMPENSATION_FAILED:
            continue
        error = (step.error or {}).get("message", "no error recorded")
        found.append(
            Finding(
                "compensation_exhausted",
                f"The compensation of step {step.name!r} gave up after {step.compensation_attempts} attempt(s): "
                f"{error}",
                f"Fix the cause, then `manage.py saga_retry {run.pk} --reason ...`; or undo the step by hand and "
                f"`manage.py saga_resolve {run.pk} --step {step.name} --reason ...`.",
                task_id=step.compensation_task_id,
                worker=_worker(step),
            )
        )
    return found


def _failed_after_pivot(run: SagaRun, steps: list[SagaStepRun]) -> list[Finding]:
    """A failed run whose step after the pivot gave up: it goes forward only, once a person acts."""
    if not failed_forward(run, steps, None):
        return []
    found = []
    for step in steps:
        if step.status != StepStatus.FAILED:
            continue
        error = (step.error or {}).get("message", "no error recorded")
        found.append(
            Finding(
                "failed_after_pivot",
                f"Step {step.name!r} failed after the pivot ({step.attempts} attempt(s)): {error}. Nothing was "
                "undone: the pivot's effect stands, so the run can only go forward.",
                f"Fix the cause, then `manage.py saga_retry {run.pk} --reason ...` (a fresh budget); or do the step "
                f"by hand and `manage.py saga_resolve {run.pk} --step {step.name} --output '<json>' --reason ...`.",
                task_id=step.task_id,
                worker=_worker(step),
            )
        )
    return found


def _worker(step: SagaStepRun) -> str:
    """The worker process of the step's latest recorded attempt, or "" when none is on record."""
    if not step.worker:
        return ""
    return str(WorkerId(step.worker, step.worker_pid)) if step.worker_pid is not None else step.worker


def _limit(step: SagaStepRun, saga: Any) -> float | None:
    declared = saga.step(step.name) if saga is not None else None
    if declared is not None and declared.timeout is not None:
        return float(declared.timeout)
    limit = celery_setting("task_soft_time_limit") or celery_setting("task_time_limit")
    return float(limit) if limit else None


def _in_flight(run: SagaRun, steps: list[SagaStepRun]) -> dict[str, Any]:
    """The forward steps running now, by their leases (their start is recorded with their outcome)."""
    try:
        return leases.in_flight(run.pk, steps)
    except (redis.RedisError, ImproperlyConfigured):  # Redis down or not configured: other findings still help
        return {}


def _over_timeout(run: SagaRun, steps: list[SagaStepRun], saga: Any, now: datetime) -> list[Finding]:
    found = []
    held = _in_flight(run, steps)
    for step in steps:
        task_id, worker = step.compensation_task_id, _worker(step)
        if step.name in held:
            holder = held[step.name]
            started: datetime | None = datetime.fromtimestamp(holder.started, tz=UTC)
            task_id, worker = holder.task_id, str(WorkerId(holder.host, holder.pid))
        elif step.status == StepStatus.COMPENSATING and not step.circuit_waiting_since:
            started = (
                run.events.filter(type=EventType.COMPENSATION_STARTED, step=step.name)
                .order_by("-seq")
                .values_list("created_at", flat=True)
            ).first()
        else:
            continue  # not running now (between attempts, or waiting for its circuit: see _circuit_waits)
        limit = _limit(step, saga)
        if started is None or limit is None:
            continue
        running = (now - started).total_seconds()
        if running > limit:
            what = "step" if step.name in held else "compensation of step"
            found.append(
                Finding(
                    "step_over_timeout",
                    f"The {what} {step.name!r} has been running {humanize_seconds(running)}, over its limit of "
                    f"{humanize_seconds(limit)} (task {task_id}).",
                    "Look for that task id in the worker log and Flower; a worker that died takes its attempt with "
                    "it, and the reaper runs it again once its hard limit and the lease have passed.",
                    task_id=task_id,
                    worker=worker,
                )
            )
    return found


def _circuit_waits(run: SagaRun, steps: list[SagaStepRun], saga: Any, now: datetime) -> list[Finding]:
    """Steps whose action or compensation the service's open breaker keeps refusing: not attempts, they wait."""
    found = []
    held = _in_flight(run, steps)
    for step in steps:
        if step.circuit_waiting_since is None or step.name in held:
            continue  # not waiting, or let through and running now
        declared = saga.step(step.name) if saga is not None else None
        service = declared.service if declared is not None else "?"
        waited = (now - step.circuit_waiting_since).total_seconds()
        what = circuit_call(step.status)
        summary = (
            f"The {what} of step {step.name!r} is waiting on an open circuit: the breaker of service {service!r} "
            f"refused it {step.circuit_refusals} time(s); it has waited {humanize_seconds(waited)}."
        )
        if what == "compensation":
            summary += " A compensation waits without limit and spends no attempt while it does."
        else:
            limit = declared.circuit_wait_seconds() if declared is not None else float(sagas_settings.CIRCUIT_WAIT)
            summary += f" It fails with circuit_open once it has waited {humanize_seconds(limit)} (circuit_wait)."
        found.append(
            Finding(
                "circuit_wait",
                summary,
                f"Check {service}; once it is healthy the breaker's next probe closes it, or "
                f"`manage.py saga_breakers --reset {service}` lets calls through at once.",
            )
        )
    return found


def _open_breakers(steps: list[SagaStepRun], saga: Any) -> list[Finding]:
    if saga is None:
        return []
    waiting = [s for s in steps if s.status in (StepStatus.PENDING, StepStatus.RUNNING, StepStatus.COMPENSATING)]
    services = {saga.step(s.name).service for s in waiting} - {None}
    found = []
    for service in sorted(services):
        try:
            breaker = breakers.for_service(service)
            status = breaker.status() if breaker else None
        except Exception:  # Redis down: other findings still help
            continue
        if status and status["state"] != "closed":
            recovery = status.get("recovery_in")
            when = f"; it lets a probe through in {humanize_seconds(recovery)}" if recovery else ""
            found.append(
                Finding(
                    "breaker_open",
                    f"The circuit breaker of service {service!r} is {status['state']}{when}: its steps wait.",
                    f"Check {service}; once it is healthy `manage.py saga_breakers --reset {service}` lets calls "
                    "through at once.",
                )
            )
    return found


def _stale(run: SagaRun, now: datetime) -> list[Finding]:
    idle = (now - run.idle_since).total_seconds()
    found = []
    # Idle is not stuck for a run whose step waits for a signal or a child run (selectors.stale says when).
    if idle >= sagas_settings.LEASE_SECONDS and stuck(SagaRun.objects.filter(pk=run.pk), now).exists():
        found.append(
            Finding(
                "lease_expired",
                f"No progress for {humanize_seconds(idle)} (the lease is {sagas_settings.LEASE_SECONDS}s).",
                "The reaper re-drives it on its next tick if celery beat runs; `manage.py saga_recover` or "
                f"`manage.py saga_retry {run.pk} --reason ...` does it now.",
            )
        )
    if run.deadline and now > run.deadline and run.status in (RunStatus.PENDING, RunStatus.EXECUTING):
        found.append(
            Finding(
                "deadline_passed",
                f"Its deadline passed {humanize_seconds((now - run.deadline).total_seconds())} ago.",
                "The next deadline check or reaper tick times it out and compensates.",
            )
        )
    return found


def _no_worker() -> list[Finding]:
    """Whether any worker consumes the queue saga tasks go to (asks the workers over the broker)."""
    queue = sagas_settings.QUEUE or current_app.conf.task_default_queue
    try:
        replies = current_app.control.inspect(timeout=1.0).active_queues() or {}
    except Exception as exc:  # the broker itself is unreachable
        return [
            Finding(
                "broker_unreachable",
                f"The broker does not answer ({exc.__class__.__name__}: {exc}).",
                "Check Redis (CELERY_BROKER_URL): no message moves while it is down.",
            )
        ]
    if any(q.get("name") == queue for queues in replies.values() for q in queues):
        return []
    return [
        Finding(
            "no_worker",
            f"No worker consumes queue {queue!r}"
            + (f" (workers answering: {', '.join(sorted(replies))})." if replies else " (no worker answered)."),
            f"Start one: `celery -A <project> worker -P prefork -Q {queue}`.",
        )
    ]
