"""Run-level services: sync definitions, start a run, complete it, and move it into compensation."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from sagas import engine, leases, logs, metrics, schemas, tracing
from sagas.conf import sagas_settings
from sagas.exceptions import (
    DefinitionChanged,
    IdempotencyConflict,
    InvalidPayload,
    RunNotFound,
    UnknownSaga,
)
from sagas.failures import NO_SECRETS, Failure
from sagas.jsonsafe import json_copy, json_size
from sagas.models import SagaDefinition, SagaEvent, SagaRun, SagaStepRun
from sagas.services import _contract, doubt
from sagas.services._core import (
    RunId,
    after_append,
    check_countdown,
    dispatch_on_commit,
    lock_run,
    move_run,
    needs_transaction,
    one_statement,
    past_deadline,
    publish_step,
    record_retry,
    saga_for,
    start_attempt,
    start_delay,
    step_row,
    writer,
)
from sagas.services.compensation import advance_compensation, pivot_passed, time_out
from sagas.services.context import budget_base, failure_recorded, in_doubt, unrecorded_failure
from sagas.services.forward import fail_forward, stop_after_failure
from sagas.services.steps import compensate_in_doubt, fail_step
from sagas.states import EventType, RunStatus, StepStatus
from sagas.workers import WorkerId

if TYPE_CHECKING:
    from sagas.definitions import Saga


logger = logging.getLogger(__name__)


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


def run_start(
    *,
    saga: type[Saga],
    payload: Mapping[str, Any] | None,
    idempotency_key: str | None = None,
    correlation_id: str | None = None,
    start_at: datetime | None = None,
) -> SagaRun:
    """Store a pending run with its steps and SagaStarted event in one transaction; dispatch on commit (with
    ``start_at``, a delayed start: no step runs before it)."""
    run, _ = run_start_or_existing(
        saga=saga, payload=payload, idempotency_key=idempotency_key, correlation_id=correlation_id, start_at=start_at
    )
    return run


def check_payload_size(saga_name: str, payload: dict[str, Any]) -> None:
    """Refuse a payload over SAGAS["MAX_PAYLOAD_BYTES"] (its compact JSON): every read of the run carries it."""
    limit = int(sagas_settings.MAX_PAYLOAD_BYTES)
    size = json_size(payload)
    if size > limit:
        raise InvalidPayload(
            f"The payload of saga {saga_name!r} is {size} bytes of JSON, over the limit of {limit} "
            "(SAGAS['MAX_PAYLOAD_BYTES']): pass ids and amounts, and keep documents elsewhere."
        )


def run_start_or_existing(
    *,
    saga: type[Saga],
    payload: Mapping[str, Any] | None,
    idempotency_key: str | None = None,
    correlation_id: str | None = None,
    start_at: datetime | None = None,
    parent: SagaRun | None = None,
    parent_step: str = "",
) -> tuple[SagaRun, bool]:
    """``run_start``, and whether this call stored the run (False: the idempotency key's existing run, also
    when another process stored it between our check and our insert). ``parent``: the run whose SubSaga step
    ``parent_step`` starts this one (a child run)."""
    with tracing.starting(saga.name, saga.version) as span:
        run, created = _start_or_existing(
            saga, payload, idempotency_key, correlation_id, start_at, parent=parent, parent_step=parent_step
        )
        span.identify(run.pk)
        span.ended("started" if created else "existing")
    return run, created


def _start_or_existing(
    saga: type[Saga],
    payload: Mapping[str, Any] | None,
    idempotency_key: str | None,
    correlation_id: str | None,
    start_at: datetime | None,
    *,
    parent: SagaRun | None,
    parent_step: str,
) -> tuple[SagaRun, bool]:
    if payload is None:
        payload = {}
    if not isinstance(payload, Mapping):
        raise InvalidPayload(f"The payload of saga {saga.name!r} must be a dict, got {type(payload).__name__}.")
    stored: dict[str, Any] = json_copy(dict(payload), what=f"payload of saga {saga.name!r}")
    check_payload_size(saga.name, stored)
    if found := schemas.errors(saga.payload_schema, stored):
        raise InvalidPayload(schemas.describe(saga.name, found), errors=found)
    for label, value in (("idempotency_key", idempotency_key), ("correlation_id", correlation_id)):
        if value is not None and (not isinstance(value, str) or not value or len(value) > 255 or "\x00" in value):
            raise InvalidPayload(f"{label} must be a non-empty string of at most 255 characters, without NUL.")
    if idempotency_key is not None:
        existing = _existing_run(saga, stored, idempotency_key)
        if existing is not None:
            return existing, False
    try:
        run = _create_run(saga, stored, idempotency_key, correlation_id, start_at, parent, parent_step)
    except IntegrityError:
        # Another process started a run with this key between our check and our insert.
        existing = _existing_run(saga, stored, idempotency_key) if idempotency_key else None
        if existing is None:
            raise
        return existing, False
    return run, True


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
    payload: dict[str, Any],
    idempotency_key: str | None,
    correlation_id: str | None,
    start_at: datetime | None = None,
    parent: SagaRun | None = None,
    parent_step: str = "",
) -> SagaRun:
    now = timezone.now()
    start_at = start_at if start_at is not None and start_at > now else None  # a time already past: at once
    run = SagaRun(
        saga_name=saga.name,
        version=saga.version,
        status=RunStatus.PENDING,
        payload=payload,
        idempotency_key=idempotency_key,
        # A delayed run's timeout counts from when it may start.
        deadline=(start_at or now) + timedelta(seconds=saga.timeout) if saga.timeout else None,
        start_at=start_at,
        created_at=now,
        updated_at=now,
        lock_version=1,
        parent=parent,
        parent_step=parent_step,
    )
    run.correlation_id = correlation_id or str(run.pk)
    run.search_text = " ".join(str(payload[key]) for key in saga.searchable if payload.get(key) not in (None, ""))
    steps = [SagaStepRun(run=run, name=step.name, index=index) for index, step in enumerate(saga.steps)]
    started = SagaEvent(
        run=run,
        seq=1,
        type=EventType.SAGA_STARTED,
        # Everything the run row holds from the start, so the run can be rebuilt from its events alone (the
        # insert adds the definition's id).
        data={
            "saga": saga.name,
            "version": saga.version,
            "idempotency_key": idempotency_key,
            "correlation_id": run.correlation_id,
            "payload": payload,
            "search_text": run.search_text,
            "deadline": run.deadline.isoformat() if run.deadline else None,
            **({"start_at": start_at.isoformat()} if start_at else {}),
            **({"parent": str(parent.pk), "parent_step": parent_step} if parent is not None else {}),
            "steps": [step.name for step in saga.steps],
            **tracing.stored(),  # with tracing on: so a re-drive's messages join the run's trace
        },
        correlation_id=run.correlation_id,
        created_at=now,
    )
    key = _contract.DefinitionKey(saga.name, saga.version, saga.spec_hash())
    path = writer()
    # Alone, outside any transaction, the insert is one statement and atomic by itself; otherwise it gets a
    # transaction (or a savepoint in the caller's), so a conflict on the idempotency key leaves nothing behind.
    alone = (
        one_statement()
        and not transaction.get_connection().in_atomic_block
        and not needs_transaction(run, [started], first_seq=1)
    )
    with contextlib.nullcontext() if alone else transaction.atomic():
        if not path.insert_run(run, steps, started, key):
            definition_sync(saga=saga)  # the first run of this definition: store it, or refuse a changed one
            if not path.insert_run(run, steps, started, key):
                raise DefinitionChanged(
                    f"Saga {saga.name!r} version {saga.version}: its stored definition changed while this run "
                    "was being started; start it again."
                )
        if not alone:
            after_append(run, started)
        metrics.run_started(saga.name)
        # A delayed run's first steps are published to wait in hops (their claim asks them to wait until it).
        delay = {"countdown": start_delay(run)} if start_at else {}
        if saga.is_graph():
            # The steps that depend on nothing start together; each success starts the steps it unblocks.
            roots = [s for s in saga.steps if not s.depends_on]
            for step in roots:
                dispatch_on_commit(run.pk, engine.step_task(saga, str(run.pk), step, 1), **delay)
        else:
            dispatch_on_commit(run.pk, engine.forward_canvas(saga, str(run.pk), saga.steps), **delay)
        if run.deadline is not None:
            dispatch_on_commit(run.pk, engine.deadline_check(str(run.pk)), countdown=deadline_check_delay(run))
    return run


def deadline_check_delay(run: SagaRun) -> float:
    """Seconds until the run's deadline check should look again, in hops (half a second past the deadline)."""
    assert run.deadline is not None
    return check_countdown(run.deadline)


def run_on_step_failure(*, run_id: RunId, step: str) -> None:
    """The chain's errback: a step's task failed. It may fire zero or many times per failure; the rows
    decide what it means.

    A failed step of an executing run starts compensation. An attempt that started (counted in Redis) and
    whose failure is not on record failed before the runner could record why (the worker killed it at its
    hard time limit, or the database went away): that counts as a failed attempt, retried per the step's
    policy. A run already compensating may have been waiting for this step to settle.
    """
    with transaction.atomic():
        try:
            run = lock_run(run_id)
        except RunNotFound:
            logger.warning("errback for saga run %s: no such run", run_id, extra=logs.fields(run_id=run_id, step=step))
            return
        step_run = step_row(run, step)
        if step_run is None:
            return
        try:
            saga = saga_for(run)
        except UnknownSaga as exc:
            _fail_without_class(run, exc)
            return
        if step_run.status in (StepStatus.PENDING, StepStatus.RUNNING):
            attempt = max(step_run.attempts, leases.started(run.pk, [step])[step])
            recorded = not attempt or failure_recorded(step_run, "action", attempt)
            if not recorded and _unrecorded_failure(run, saga, step_run, attempt):
                return  # retried
        if run.status == RunStatus.EXECUTING and step_run.status == StepStatus.FAILED:
            stop_after_failure(run, saga, step_run)
        elif run.status == RunStatus.COMPENSATING:
            advance_compensation(run, saga)


def _unrecorded_failure(run: SagaRun, saga: type[Saga], step_run: SagaStepRun, attempt: int) -> bool:
    """Record the start and failure of attempt ``attempt``, which the runner could not record; True if the
    errback has nothing left to do (the step is retried, or in doubt: settled while its run compensates)."""
    declared = saga.step(step_run.name)
    holder = leases.holder(run.pk, step_run.name)
    started_at = None
    if holder is not None and holder.attempt == attempt:
        started_at = datetime.fromtimestamp(holder.started, tz=UTC)
        leases.forget(run.pk, step_run.name)  # its holder is gone: a retry need not wait for the lease to lapse
    if step_run.status == StepStatus.PENDING or step_run.attempts < attempt:
        known = holder is not None and holder.attempt == attempt
        task_id = holder.task_id if holder is not None and known else step_run.task_id
        # The lease names the process that ran the lost attempt (its host name: the node name is not in it).
        worker = WorkerId(holder.host, holder.pid) if holder is not None and known else None
        start_attempt(run, step_run, number=attempt, task_id=task_id, at=started_at or timezone.now(), worker=worker)
    exc = unrecorded_failure(run, step_run, declared.timeout, EventType.STEP_STARTED, started_at)
    error = Failure.from_exception(exc, attempt=attempt, secrets=NO_SECRETS)
    policy = declared.retry or sagas_settings.default_retry
    of_budget = attempt - budget_base(step_run)
    if run.status == RunStatus.COMPENSATING:
        if in_doubt(step_run) and not policy.should_retry(exc, of_budget):
            # Settling it used up its budget of its own: it fails with what happened (its effect, if any, stays).
            fail_step(run, step_run, error)
            return False
        # Killed at its hard limit or unable to record its outcome after its run stopped executing: what the
        # attempt did is not known, so the step is settled (run again with the same key) before it is undone.
        doubt.settle(run, saga, step_run, attempt)
        return True
    if run.status == RunStatus.EXECUTING and not past_deadline(run) and policy.should_retry(exc, of_budget):
        delay = policy.delay(of_budget, exc)
        record_retry(run, step_run, "action", error, delay)
        publish_step(run, saga, step_run.name, attempt=attempt + 1, countdown=delay)
        return True
    if run.status in (RunStatus.PENDING, RunStatus.EXECUTING) and not pivot_passed(run, list(run.steps.all()), saga):
        # No retry follows (the budget is spent, or the deadline passed), and what the attempt did is not known:
        # the run stops with the step in doubt, which runs again with its key and is undone if it succeeded.
        record_retry(run, step_run, "action", error, 0.0)  # what happened to it, on record before the doubt
        compensate_in_doubt(run, saga, step_run, attempt, error, timed_out=past_deadline(run))
        return True
    fail_step(run, step_run, error)
    return False


def _fail_without_class(run: SagaRun, exc: UnknownSaga) -> None:
    """Without the saga's class no compensation can be called: hand the run to a person (after its pivot
    without even a compensating phase: it only goes forward)."""
    failed = run.steps.filter(status=StepStatus.FAILED).order_by("index").first()
    if run.status == RunStatus.EXECUTING and failed is not None and pivot_passed(run, list(run.steps.all()), None):
        fail_forward(run, failed.name, reason=str(exc))
        return
    if run.status == RunStatus.EXECUTING:
        move_run(run, RunStatus.COMPENSATING, event=EventType.SAGA_COMPENSATING, data={"reason": str(exc)})
    if run.status == RunStatus.COMPENSATING:
        move_run(
            run,
            RunStatus.FAILED,
            event=EventType.SAGA_FAILED,
            data={"reason": str(exc)},
        )


def run_check_deadline(*, run_id: RunId) -> bool:
    """Time out a run that is still pending or executing past its deadline; True if it did.

    Called by the deadline check scheduled at start, which re-arms itself while the deadline is far; step
    claims make the same check before every attempt.
    """
    with transaction.atomic():
        try:
            run = lock_run(run_id)
        except RunNotFound:
            return False
        if run.deadline is None or run.status not in (RunStatus.PENDING, RunStatus.EXECUTING):
            return False
        if not past_deadline(run):
            dispatch_on_commit(run.pk, engine.deadline_check(str(run.pk)), countdown=deadline_check_delay(run))
            return False
        try:
            saga = saga_for(run)
        except UnknownSaga as exc:
            _fail_without_class(run, exc)
            return True
        if run.status == RunStatus.PENDING:
            move_run(run, RunStatus.EXECUTING, event=EventType.SAGA_EXECUTING)
        time_out(run, saga)
        return True
