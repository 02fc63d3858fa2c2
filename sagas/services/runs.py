"""Run-level services: sync definitions, start a run, complete it, and move it into compensation."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from celery.canvas import Signature
from django.db import IntegrityError, transaction
from django.utils import timezone

from sagas import engine
from sagas.exceptions import DefinitionChanged, IdempotencyConflict, InvalidPayload, UnknownSaga
from sagas.jsonsafe import json_copy
from sagas.models import SagaDefinition, SagaEvent, SagaRun, SagaStepRun
from sagas.registry import get_saga
from sagas.services._core import RunId, last_event, lock_run, logger, move_run, move_step
from sagas.states import EventType, RunStatus, StepStatus

if TYPE_CHECKING:
    from sagas.definitions import Saga


def definition_sync(*, saga: type[Saga]) -> SagaDefinition:
    """Store the saga's definition row, or check that the stored one matches the code."""
    spec_hash = saga.spec_hash()
    definition, created = SagaDefinition.objects.get_or_create(
        name=saga.name, version=saga.version, defaults={"spec": saga.spec(), "spec_hash": spec_hash}
    )
    if not created and definition.spec_hash != spec_hash:
        raise DefinitionChanged(
            f"Saga {saga.name!r} version {saga.version} is stored with other steps than "
            f"{saga.__module__}.{saga.__qualname__} now declares (stored {definition.spec_hash[:12]}, code "
            f"{spec_hash[:12]}). Bump `version` on the class when you change its steps; runs of the old "
            "version keep theirs."
        )
    return definition


def dispatch_on_commit(run_id: RunId, canvas: Signature) -> None:
    """Publish ``canvas`` once the current transaction commits (ARCHITECTURE §6.4)."""

    def publish() -> None:
        try:
            canvas.apply_async()
        except Exception:
            # The run is committed; only its trigger is lost. Say so plainly instead of failing the
            # caller after its transaction already committed.
            logger.exception(
                "Could not publish the tasks of saga run %s (is the broker reachable?); "
                "the run keeps its state and must be re-driven.",
                run_id,
            )

    transaction.on_commit(publish)


def run_start(
    *,
    saga: type[Saga],
    payload: Mapping[str, Any] | None,
    idempotency_key: str | None = None,
    correlation_id: str | None = None,
) -> SagaRun:
    """Store a pending run with its steps and SagaStarted event in one transaction; dispatch on commit."""
    if payload is None:
        payload = {}
    if not isinstance(payload, Mapping):
        raise InvalidPayload(f"The payload of saga {saga.name!r} must be a dict, got {type(payload).__name__}.")
    stored: dict[str, Any] = json_copy(dict(payload), what=f"payload of saga {saga.name!r}")
    for label, value in (("idempotency_key", idempotency_key), ("correlation_id", correlation_id)):
        if value is not None and (not isinstance(value, str) or not value or len(value) > 255):
            raise InvalidPayload(f"{label} must be a non-empty string of at most 255 characters.")
    if idempotency_key is not None:
        existing = _existing_run(saga, stored, idempotency_key)
        if existing is not None:
            return existing
    definition = definition_sync(saga=saga)
    try:
        with transaction.atomic():
            run = _create_run(saga, definition, stored, idempotency_key, correlation_id)
    except IntegrityError:
        # Another process started a run with this key between our check and our insert.
        existing = _existing_run(saga, stored, idempotency_key) if idempotency_key else None
        if existing is None:
            raise
        return existing
    return run


def _existing_run(saga: type[Saga], payload: dict[str, Any], key: str) -> SagaRun | None:
    run = SagaRun.objects.filter(idempotency_key=key).first()
    if run is None:
        return None
    if run.saga_name != saga.name:
        raise IdempotencyConflict(
            f"Idempotency key {key!r} already started a {run.saga_name!r} run ({run.pk}), not {saga.name!r}."
        )
    if run.payload != payload:
        raise IdempotencyConflict(
            f"Idempotency key {key!r} already started run {run.pk} with another payload. Use a new key for "
            "a new request, or the same payload to get the existing run."
        )
    return run


def _create_run(
    saga: type[Saga],
    definition: SagaDefinition,
    payload: dict[str, Any],
    idempotency_key: str | None,
    correlation_id: str | None,
) -> SagaRun:
    now = timezone.now()
    run = SagaRun(
        definition=definition,
        saga_name=saga.name,
        version=saga.version,
        status=RunStatus.PENDING,
        payload=payload,
        idempotency_key=idempotency_key,
        deadline=now + timedelta(seconds=saga.timeout) if saga.timeout else None,
        created_at=now,
        updated_at=now,
        lock_version=1,
    )
    run.correlation_id = correlation_id or str(run.pk)
    run.save(force_insert=True)
    SagaStepRun.objects.bulk_create(
        SagaStepRun(run=run, name=step.name, index=index) for index, step in enumerate(saga.steps)
    )
    SagaEvent.objects.create(
        run=run,
        seq=1,
        type=EventType.SAGA_STARTED,
        data={
            "saga": saga.name,
            "version": saga.version,
            "idempotency_key": idempotency_key,
            "correlation_id": run.correlation_id,
            "steps": [step.name for step in saga.steps],
        },
        created_at=now,
    )
    dispatch_on_commit(run.pk, engine.forward_canvas(saga, str(run.pk), saga.steps))
    return run


def run_complete(*, run_id: RunId) -> bool:
    """Mark an executing run completed when all its steps succeeded; False if it was not ready."""
    with transaction.atomic():
        run = lock_run(run_id)
        if run.status != RunStatus.EXECUTING:
            return False
        if run.steps.exclude(status=StepStatus.SUCCEEDED).exists():
            return False
        move_run(
            run,
            RunStatus.COMPLETED,
            event=EventType.SAGA_COMPLETED,
            causation=last_event(run, EventType.STEP_SUCCEEDED),
            fields={"finished_at": timezone.now()},
        )
    return True


def saga_for(run: SagaRun) -> type[Saga]:
    """The saga class a run executes (its own version), or UnknownSaga with what to do."""
    return get_saga(run.saga_name, run.version)


def run_compensate(*, run_id: RunId) -> list[str] | None:
    """Move an executing run whose step failed to compensating and dispatch its compensations.

    Called by the chain's errback, which may fire zero or many times: only the first call for a run
    with a failed step does anything. Returns the steps to compensate, in order, or None.
    """
    with transaction.atomic():
        run = lock_run(run_id)
        if run.status != RunStatus.EXECUTING:
            return None
        steps = list(run.steps.order_by("index"))
        failed = [step for step in steps if step.status == StepStatus.FAILED]
        if not failed:
            logger.warning("saga run %s: errback fired but no step has failed; nothing to compensate", run.pk)
            return None
        cause = last_event(run, EventType.STEP_FAILED, failed[0].name)
        compensating = move_run(
            run,
            RunStatus.COMPENSATING,
            event=EventType.SAGA_COMPENSATING,
            data={"failed_step": failed[0].name},
            causation=cause,
        )
        for step_run in steps:
            if step_run.status == StepStatus.PENDING:
                move_step(run, step_run, StepStatus.SKIPPED, event=EventType.STEP_SKIPPED, causation=compensating)
        try:
            saga = saga_for(run)
        except UnknownSaga as exc:
            # Without the class there is no compensation to call: a person has to take over.
            move_run(
                run,
                RunStatus.FAILED,
                event=EventType.SAGA_FAILED,
                data={"reason": str(exc)},
                causation=compensating,
                fields={"finished_at": timezone.now()},
            )
            return None
        return dispatch_compensations(run, saga, steps)


def dispatch_compensations(run: SagaRun, saga: type[Saga], steps: list[SagaStepRun]) -> list[str]:
    """Dispatch the compensations still owed by ``steps`` (caller holds the run lock)."""
    owed = {
        step_run.name
        for step_run in steps
        if step_run.status in (StepStatus.SUCCEEDED, StepStatus.COMPENSATING, StepStatus.COMPENSATION_FAILED)
        and _has_compensation(saga, step_run.name)
    }
    ordered = engine.compensation_order(saga, owed)
    dispatch_on_commit(run.pk, engine.compensation_canvas(saga, str(run.pk), ordered))
    return [step.name for step in ordered]


def _has_compensation(saga: type[Saga], name: str) -> bool:
    try:
        return saga.step(name).compensation is not None
    except KeyError:
        return False


def run_finish_compensation(*, run_id: RunId) -> str | None:
    """End a compensating run: ``failed`` if a compensation gave up, else ``compensated``.

    Returns the new status, or None when compensations are still under way (or the run moved on).
    """
    with transaction.atomic():
        run = lock_run(run_id)
        if run.status != RunStatus.COMPENSATING:
            return None
        saga = saga_for(run)
        steps = list(run.steps.all())
        gave_up = [s.name for s in steps if s.status == StepStatus.COMPENSATION_FAILED]
        in_flight = [
            s.name
            for s in steps
            if s.status == StepStatus.COMPENSATING
            or (s.status == StepStatus.SUCCEEDED and _has_compensation(saga, s.name))
        ]
        if in_flight:
            return None
        if gave_up:
            move_run(
                run,
                RunStatus.FAILED,
                event=EventType.SAGA_FAILED,
                data={"compensation_failed": gave_up},
                causation=last_event(run, EventType.COMPENSATION_FAILED),
                fields={"finished_at": timezone.now()},
            )
            logger.error("saga run %s failed: compensation of %s gave up; a person must act", run.pk, gave_up)
            return RunStatus.FAILED
        move_run(
            run,
            RunStatus.COMPENSATED,
            event=EventType.SAGA_COMPENSATED,
            causation=last_event(run, EventType.COMPENSATION_SUCCEEDED),
            fields={"finished_at": timezone.now()},
        )
        return RunStatus.COMPENSATED
