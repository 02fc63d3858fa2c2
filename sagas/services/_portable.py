"""The write path's portable implementation: the same contract as the PostgreSQL statement in
``_statement.write``, made of ordinary ORM statements in one transaction (SQLite, and any database Django knows)."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import F, Q

from sagas.models import SagaDefinition, SagaEvent, SagaRun, SagaStepRun
from sagas.services._contract import ATTEMPT_CAUSES, Cause, DefinitionKey, GuardFailed, StepChange, Written


def write(
    run_id: Any,
    *,
    run_values: dict[str, Any],
    expect_status: str | None,
    step: StepChange | None,
    events: list[dict[str, Any]],
    causes: list[Cause],
    count_unfinished: bool = False,
) -> Written:
    """``_statement.write``, statement by statement: the run's guarded UPDATE first (it takes the run's row lock),
    then the step's, then the events. Outside a transaction it makes its own, so a failed guard keeps nothing."""
    with transaction.atomic():
        rows = SagaRun.objects.filter(pk=run_id, **({"status": expect_status} if expect_status else {}))
        # The guard: zero rows means another writer moved the run first.
        if rows.update(**run_values, lock_version=F("lock_version") + len(events)) != 1:
            raise GuardFailed
        run = SagaRun.objects.get(pk=run_id)
        if step is not None:
            updates: dict[str, Any] = dict(step.values)
            if step.increment:
                updates[step.increment] = F(step.increment) + 1
            steps = SagaStepRun.objects.filter(pk=step.pk, status=step.source)
            if step.attempts is not None:
                steps = steps.filter(attempts=step.attempts)
            if steps.update(**updates) != 1:
                raise GuardFailed
        first = run.lock_version - len(events) + 1
        written = Written(run={}, event_ids=[], causation_ids=[])
        for number, (columns, cause) in enumerate(zip(events, causes, strict=True)):
            seq = first + number
            cause_id = _cause_id(run_id, columns.get("step", ""), cause, written.event_ids, before=first)
            event = SagaEvent(
                run_id=run_id, seq=seq, correlation_id=run.correlation_id, causation_id=cause_id, **columns
            )
            event.save(force_insert=True)
            written.event_ids.append(event.pk)
            written.causation_ids.append(cause_id)
        if count_unfinished:
            others = SagaStepRun.objects.filter(run_id=run_id).exclude(status="succeeded")
            written.others_unfinished = others.exclude(pk=step.pk).count() if step is not None else others.count()
        written.run = {f.attname: getattr(run, f.attname) for f in SagaRun._meta.concrete_fields}
        return written


def insert_run(run: SagaRun, steps: list[SagaStepRun], started: SagaEvent, definition: DefinitionKey) -> bool:
    """``_statement.insert_run``, statement by statement in one transaction: False, with nothing inserted, when no
    definition with that name, version and hash is stored."""
    # Inside the caller's transaction without a savepoint of its own: the start already gives it one.
    with transaction.atomic(savepoint=False):
        stored = SagaDefinition.objects.filter(
            name=definition.name, version=definition.version, spec_hash=definition.spec_hash
        ).values_list("pk", flat=True)
        definition_id = stored.first()
        if definition_id is None:
            return False
        run.definition_id = definition_id
        started.data = {**started.data, "definition": definition_id}
        run.save(force_insert=True)
        SagaStepRun.objects.bulk_create(steps)
        started.save(force_insert=True)
        return True


def _cause_id(run_id: Any, step: str, cause: Cause, written: list[int], *, before: int) -> int | None:
    """The cause ``_statement`` computes in SQL, as queries: the same rules, the same answer (defaults look at
    the events before this write, as the statement's snapshot does)."""
    if cause.id is not None:
        return cause.id
    if cause.previous:
        return written[-1] if written else None
    if cause.query is not None:
        row = next(iter(cause.query), None)  # a query of {"pk": id} rows, sliced to the first
        return row["pk"] if row else None
    events = SagaEvent.objects.filter(run_id=run_id, seq__lt=before).order_by("-seq")
    if cause.attempt_of is not None:
        name, dependencies = cause.attempt_of
        causes = (
            Q(step=name) | Q(type=ATTEMPT_CAUSES[0], step__in=sorted(dependencies)) | Q(type__in=ATTEMPT_CAUSES[1:])
        )
        return events.filter(causes).values_list("pk", flat=True).first()
    if step:
        found = events.filter(step=step).values_list("pk", flat=True).first()
        if found is not None:
            return found
    return events.values_list("pk", flat=True).first()
