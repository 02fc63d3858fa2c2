"""One round trip per state change on PostgreSQL: the run's UPDATE, a step's UPDATE and the event they record,
sent as one data-modifying WITH statement instead of one statement each."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, cast

from django.db import connection
from django.db.models import Field, Model, QuerySet

from sagas.models import SagaEvent, SagaRun, SagaStepRun

EventIds = QuerySet[SagaEvent, Any]  # a query of event ids (``.values("pk")``), sliced to its first row

# The event's columns, in the order of the INSERT (run_id, seq and correlation_id come from the run row).
EVENT_COLUMNS = ("type", "step", "data", "actor", "created_at")


def supported() -> bool:
    """Data-modifying WITH is PostgreSQL's; other databases take the ORM's statement-by-statement path."""
    return connection.vendor == "postgresql"


@dataclass(frozen=True, slots=True)
class StepChange:
    """A step's guarded UPDATE: it applies only while the step has status ``source`` (and, with ``attempts``,
    is still at that attempt); ``increment`` names a counter column to add one to."""

    pk: int
    source: str
    values: dict[str, Any]
    increment: str | None = None
    attempts: int | None = None


@dataclass(frozen=True, slots=True)
class Cause:
    """Where the event's causation comes from: an event id, the first row of a query of event ids, or (neither)
    the step's latest event for a step event, else the run's latest event."""

    id: int | None = None
    query: EventIds | None = None


@dataclass(slots=True)
class Written:
    """What the statement wrote: the run's columns after its UPDATE, and the event's id, seq and cause."""

    run: dict[str, Any]
    event_id: int
    causation_id: int | None
    others_unfinished: int | None = None  # with ``count_unfinished``: the run's other steps not yet succeeded
    extra: dict[str, Any] = field(default_factory=dict)


class GuardFailed(Exception):
    """The run or the step was no longer in the state the change was guarded by; nothing was kept of it only
    if the caller's transaction rolls back (the run's UPDATE may have applied)."""


def _quote(name: str) -> str:
    return connection.ops.quote_name(name)


def _field(model: type[Model], name: str) -> Field[Any, Any]:
    return cast("Field[Any, Any]", model._meta.get_field(name))


def _assignments(model: type[Model], values: dict[str, Any], increment: str | None) -> tuple[list[str], list[Any]]:
    sql, params = [], []
    for name, value in values.items():
        column = _field(model, name)
        sql.append(f"{_quote(column.column)} = %s")
        params.append(column.get_db_prep_save(value, connection))
    if increment:
        column_name = _quote(_field(model, increment).column)
        sql.append(f"{column_name} = {column_name} + 1")
    return sql, params


@functools.cache
def _run_column_names() -> tuple[str, ...]:
    """The run's columns by name, never *: a statement prepared by a worker must not change its result's shape when
    a migration adds a column while the worker runs. Worked out once per process (every step's statement uses it)."""
    return tuple(_quote(f.column) for f in SagaRun._meta.concrete_fields)


def _typed(model: type[Model], name: str) -> str:
    """A placeholder cast to the column's type: INSERT ... SELECT infers nothing from its target."""
    return f"CAST(%s AS {_field(model, name).db_type(connection)})"


def _subquery(query: EventIds) -> tuple[str, list[Any]]:
    sql, params = query.query.sql_with_params()
    return f"({sql})", list(params)


def _cause_sql(run_id: Any, step: str, cause: Cause) -> tuple[str, list[Any]]:
    if cause.id is not None:
        return "%s", [cause.id]
    if cause.query is not None:
        return _subquery(cause.query)
    events = SagaEvent.objects.filter(run_id=run_id).order_by("-seq").values("pk")
    latest_sql, latest_params = _subquery(events[:1])
    if not step:
        return latest_sql, latest_params
    step_sql, step_params = _subquery(events.filter(step=step)[:1])
    return f"COALESCE({step_sql}, {latest_sql})", step_params + latest_params


def write(
    run_id: Any,
    *,
    run_values: dict[str, Any],
    expect_status: str | None,
    step: StepChange | None,
    event: dict[str, Any],
    cause: Cause,
    count_unfinished: bool = False,
) -> Written:
    """Bump the run's lock_version (the event's seq) and set ``run_values``, guarded by ``expect_status``;
    apply ``step``'s guarded change; insert the event. One statement; GuardFailed when a guard did not hold.

    The run's UPDATE goes first and takes the run's row lock (as ``lock_run`` does), so the seq it returns is
    the next one; the step's UPDATE and the INSERT happen only if it matched.
    """
    run_table, step_table, event_table = (_quote(m._meta.db_table) for m in (SagaRun, SagaStepRun, SagaEvent))
    sets, params = _assignments(SagaRun, run_values, "lock_version")
    where = ["id = %s"]
    params.append(run_id)
    if expect_status is not None:
        where.append("status = %s")
        params.append(expect_status)
    run_columns = _run_column_names()
    returning = ", ".join(run_columns)
    parts = [f"r AS (UPDATE {run_table} SET {', '.join(sets)} WHERE {' AND '.join(where)} RETURNING {returning})"]
    step_guard = ""
    if step is not None:
        step_sets, step_params = _assignments(SagaStepRun, step.values, step.increment)
        step_where = "id = %s AND status = %s" + (" AND attempts = %s" if step.attempts is not None else "")
        parts.append(
            f"s AS (UPDATE {step_table} SET {', '.join(step_sets)} WHERE {step_where} "
            "AND EXISTS (SELECT 1 FROM r) RETURNING id)"
        )
        params += step_params + [step.pk, step.source] + ([step.attempts] if step.attempts is not None else [])
        step_guard = " WHERE EXISTS (SELECT 1 FROM s)"
    cause_sql, cause_params = _cause_sql(run_id, event.get("step", ""), cause)
    values = ", ".join(_typed(SagaEvent, name) for name in EVENT_COLUMNS)
    parts.append(
        f"e AS (INSERT INTO {event_table} (run_id, seq, correlation_id, causation_id, {', '.join(EVENT_COLUMNS)}) "
        f"SELECT r.id, r.lock_version, r.correlation_id, {cause_sql}, {values} FROM r{step_guard} "
        "RETURNING id, causation_id)"
    )
    params += cause_params
    params += [_field(SagaEvent, name).get_db_prep_save(event[name], connection) for name in EVENT_COLUMNS]
    unfinished = ""
    if count_unfinished:
        # The snapshot predates this statement's own step change: leave that step out of the count.
        others = " AND id <> %s" if step is not None else ""
        unfinished = f", (SELECT count(*) FROM {step_table} WHERE run_id = %s AND status <> %s{others}) AS unfinished"
        params += [run_id, "succeeded"] + ([step.pk] if step is not None else [])
    returned = "e.id AS sagas_event_id, e.causation_id AS sagas_event_cause"
    run_values_sql = ", ".join(f"r.{column}" for column in run_columns)
    sql = f"WITH {', '.join(parts)} SELECT {returned}, {run_values_sql}{unfinished} FROM e, r"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
        names = [column.name for column in cursor.description] if row is not None else []
    if row is None:
        raise GuardFailed
    values_by_name = dict(zip(names, row, strict=True))
    written = Written(
        run={},
        event_id=values_by_name.pop("sagas_event_id"),
        causation_id=values_by_name.pop("sagas_event_cause"),
        others_unfinished=values_by_name.pop("unfinished", None),
    )
    written.run = _run_columns(values_by_name)
    return written


def _run_columns(raw: dict[str, Any]) -> dict[str, Any]:
    """The run's attribute values from RETURNING, converted as the ORM converts what it reads."""
    values: dict[str, Any] = {}
    for model_field in SagaRun._meta.concrete_fields:
        if model_field.column not in raw:
            continue
        value = raw[model_field.column]
        column = model_field.get_col(SagaRun._meta.db_table)
        for converter in connection.ops.get_db_converters(column) + column.get_db_converters(connection):
            value = converter(value, column, connection)
        values[model_field.attname] = value
    return values


def event_columns(event: SagaEvent) -> dict[str, Any]:
    """The values ``write`` inserts from an unsaved event (run_id, seq and correlation_id come from the run row)."""
    return {name: getattr(event, name) for name in EVENT_COLUMNS}


def stored_event(written: Written, event: SagaEvent) -> SagaEvent:
    """``event`` as ``write`` stored it: its id, its seq (the run's new lock_version) and its cause."""
    event.pk, event.seq, event.causation_id = written.event_id, written.run["lock_version"], written.causation_id
    event._state.adding, event._state.db = False, connection.alias
    return event


def run_from(values: dict[str, Any]) -> SagaRun:
    """A SagaRun instance of the row ``write`` returned, as if loaded from the database."""
    names = [f.attname for f in SagaRun._meta.concrete_fields]
    return SagaRun.from_db(connection.alias, names, [values[name] for name in names])
