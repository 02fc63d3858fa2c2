"""One round trip per state change on PostgreSQL: the run's UPDATE, a step's UPDATE and the event they record,
sent as one data-modifying WITH statement instead of one statement each."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, cast

from django.db import DEFAULT_DB_ALIAS, DataError, connection, connections
from django.db.models import Field, Model

from sagas.models import SagaDefinition, SagaEvent, SagaRun, SagaStepRun
from sagas.services._contract import (
    ATTEMPT_CAUSES,
    EVENT_COLUMNS,
    Cause,
    DefinitionKey,
    EventIds,
    GuardFailed,
    StepChange,
    Written,
)


@functools.cache
def _quote(name: str) -> str:
    return connection.ops.quote_name(name)


def _db() -> Any:
    # The connection itself, looked up once per call: every attribute read through django.db.connection goes
    # through the connection handler's thread-local lookup again.
    return connections[DEFAULT_DB_ALIAS]


@functools.cache
def _field(model: type[Model], name: str) -> Field[Any, Any]:
    return cast("Field[Any, Any]", model._meta.get_field(name))


def _assignments(model: type[Model], values: dict[str, Any], increment: str | None) -> tuple[list[str], list[Any]]:
    sql, params, db = [], [], _db()
    for name, value in values.items():
        column = _field(model, name)
        sql.append(f"{_quote(column.column)} = %s")
        params.append(column.get_db_prep_save(value, db))
    if increment:
        column_name = _quote(_field(model, increment).column)
        sql.append(f"{column_name} = {column_name} + 1")
    return sql, params


@functools.cache
def _typed(model: type[Model], name: str) -> str:
    """A placeholder cast to the column's type: INSERT ... SELECT infers nothing from its target."""
    return f"CAST(%s AS {_field(model, name).db_type(connection)})"


@functools.cache
def _converters(model: type[Model]) -> tuple[tuple[str, str, tuple[Any, ...], Any], ...]:
    """Each concrete field of ``model``: its column, attribute, the converters the ORM applies to what it reads,
    and the expression they take. Worked out once per process: every step reads and writes these rows."""
    found = []
    for model_field in model._meta.concrete_fields:
        column = model_field.get_col(model._meta.db_table)
        converters = tuple(connection.ops.get_db_converters(column) + column.get_db_converters(connection))
        found.append((model_field.column, model_field.attname, converters, column))
    return tuple(found)


def _converted(model: type[Model], raw: dict[str, Any]) -> dict[str, Any]:
    """Attribute values of ``model`` from raw column values (those present), converted as the ORM converts."""
    values: dict[str, Any] = {}
    db = _db()
    for column_name, attname, converters, column in _converters(model):
        if column_name not in raw:
            continue
        value = raw[column_name]
        for converter in converters:
            value = converter(value, column, db)
        values[attname] = value
    return values


@functools.cache
def _read_sql() -> tuple[str, tuple[str, ...]]:
    """The claim's read and the names of the columns it returns (known here: no cursor description to build)."""
    steps, runs = SagaStepRun._meta.db_table, SagaRun._meta.db_table
    names = [f"s_{c}" for c, *_ in _converters(SagaStepRun)] + [f"r_{c}" for c, *_ in _converters(SagaRun)]
    columns = [f"{name[0]}.{_quote(name[2:])} AS {name}" for name in names]
    sql = (
        f"SELECT {', '.join(columns)} FROM {_quote(runs)} r LEFT JOIN {_quote(steps)} s ON s.run_id = r.id "
        f"WHERE r.id = %s ORDER BY s.{_quote('index')}"
    )
    return sql, tuple(names)


def read_run_with_steps(run_id: Any) -> tuple[SagaRun, list[SagaStepRun]] | None:
    """The run and its steps in one query, without a lock and without the ORM's query building (every claim
    makes this read); None when there is no such run. Plain SQL: every database runs it."""
    db = _db()
    sql, names = _read_sql()
    with db.cursor() as cursor:
        cursor.execute(sql, [_field(SagaRun, "id").get_db_prep_value(run_id, db)])
        rows = cursor.fetchall()
    if not rows:
        return None
    run_names = [f.attname for f in SagaRun._meta.concrete_fields]
    step_names = [f.attname for f in SagaStepRun._meta.concrete_fields]
    first = dict(zip(names, rows[0], strict=True))
    run_values = _converted(SagaRun, {k[2:]: v for k, v in first.items() if k.startswith("r_")})
    run = SagaRun.from_db(db.alias, run_names, [run_values[name] for name in run_names])
    steps = []
    for row in rows:
        raw = dict(zip(names, row, strict=True))
        if raw["s_id"] is None:
            continue  # a run without steps
        values = _converted(SagaStepRun, {k[2:]: v for k, v in raw.items() if k.startswith("s_")})
        step = SagaStepRun.from_db(db.alias, step_names, [values[name] for name in step_names])
        step.run = run
        steps.append(step)
    return run, steps


def _subquery(query: EventIds) -> tuple[str, list[Any]]:
    sql, params = query.query.sql_with_params()
    return f"({sql})", list(params)


def _cause_sql(run_id: Any, step: str, cause: Cause, previous_id: str) -> tuple[str, list[Any]]:
    if cause.id is not None:
        return "%s", [cause.id]
    if cause.previous:
        return previous_id, []
    if cause.query is not None:
        return _subquery(cause.query)
    event_table = _quote(SagaEvent._meta.db_table)
    if cause.attempt_of is not None:
        name, dependencies = cause.attempt_of
        sql = (
            f"(SELECT id FROM {event_table} WHERE run_id = %s AND (step = %s OR (type = %s AND step = ANY(%s)) "
            "OR type IN (%s, %s)) ORDER BY seq DESC LIMIT 1)"
        )
        return sql, [run_id, name, ATTEMPT_CAUSES[0], sorted(dependencies), *ATTEMPT_CAUSES[1:]]
    latest = f"(SELECT id FROM {event_table} WHERE run_id = %s ORDER BY seq DESC LIMIT 1)"
    if not step:
        return latest, [run_id]
    own = f"(SELECT id FROM {event_table} WHERE run_id = %s AND step = %s ORDER BY seq DESC LIMIT 1)"
    return f"COALESCE({own}, {latest})", [run_id, step, run_id]


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
    """Bump the run's lock_version by one per event (the events' seqs) and set ``run_values``, guarded by
    ``expect_status``; apply ``step``'s guarded change; insert ``events`` in order. One statement; GuardFailed
    when a guard did not hold.

    The run's UPDATE goes first and takes the run's row lock (as ``lock_run`` does), so the seqs it returns are
    the next ones; the step's UPDATE and the INSERT happen only if it matched. Outside a transaction a step
    guard that fails aborts the whole statement, so nothing of it is kept; inside one the caller rolls back.
    """
    db = _db()
    run_table, step_table, event_table = (_quote(m._meta.db_table) for m in (SagaRun, SagaStepRun, SagaEvent))
    sets, params = _assignments(SagaRun, run_values, None)
    count = len(events)
    sets.append(f"lock_version = lock_version + {count}")
    where = ["id = %s"]
    params.append(run_id)
    if expect_status is not None:
        where.append("status = %s")
        params.append(expect_status)
    # Only what the caller set and the new lock_version come back (never the payload): the caller has the rest.
    run_columns = [_quote(c) for c in ("id", "correlation_id", "lock_version")]
    run_columns += [_quote(_field(SagaRun, name).column) for name in run_values]
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
    # Ids drawn first, so an event can name the one before it as its cause in the same INSERT.
    sequence = f"pg_get_serial_sequence('{SagaEvent._meta.db_table}', 'id')"
    parts.append(f"i AS (SELECT {', '.join(f'nextval({sequence}) AS e{n}' for n in range(count))})")
    values = ", ".join(_typed(SagaEvent, name) for name in EVENT_COLUMNS)
    selects = []
    for number, (event, cause) in enumerate(zip(events, causes, strict=True)):
        cause_sql, cause_params = _cause_sql(run_id, event.get("step", ""), cause, f"i.e{number - 1}")
        selects.append(
            f"SELECT i.e{number}, r.id, r.lock_version - {count - 1 - number}, r.correlation_id, {cause_sql}, "
            f"{values} FROM r, i{step_guard}"
        )
        params += cause_params
        params += [_field(SagaEvent, name).get_db_prep_save(event[name], db) for name in EVENT_COLUMNS]
    parts.append(
        f"e AS (INSERT INTO {event_table} (id, run_id, seq, correlation_id, causation_id, "
        f"{', '.join(EVENT_COLUMNS)}) {' UNION ALL '.join(selects)} RETURNING id, causation_id)"
    )
    unfinished = ""
    if count_unfinished:
        # The snapshot predates this statement's own step change: leave that step out of the count.
        others = " AND id <> %s" if step is not None else ""
        unfinished = f", (SELECT count(*) FROM {step_table} WHERE run_id = %s AND status <> %s{others}) AS unfinished"
        params += [run_id, "succeeded"] + ([step.pk] if step is not None else [])
    guard = ""
    if step is not None and not db.in_atomic_block:
        # Division by zero when the step's guard failed: the statement, run UPDATE included, is undone.
        guard = ", (SELECT 1 / count(*) FROM s) AS sagas_step_guard"
    returned = (
        "(SELECT array_agg(id ORDER BY id) FROM e) AS sagas_event_ids, "
        "(SELECT array_agg(causation_id ORDER BY id) FROM e) AS sagas_event_causes"
    )
    run_values_sql = ", ".join(f"r.{column}" for column in run_columns)
    sql = f"WITH {', '.join(parts)} SELECT {returned}, {run_values_sql}{unfinished}{guard} FROM r"
    try:
        with db.cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
            names = [column.name for column in cursor.description] if row is not None else []
    except DataError as exc:
        if "division by zero" in str(exc):
            raise GuardFailed from None
        raise
    if row is None:
        raise GuardFailed
    values_by_name = dict(zip(names, row, strict=True))
    values_by_name.pop("sagas_step_guard", None)
    event_ids = values_by_name.pop("sagas_event_ids")
    if not event_ids:
        raise GuardFailed  # the run's guard held, the step's did not (inside a transaction: the caller rolls back)
    written = Written(
        run={},
        event_ids=list(event_ids),
        causation_ids=list(values_by_name.pop("sagas_event_causes")),
        others_unfinished=values_by_name.pop("unfinished", None),
    )
    written.run = _converted(SagaRun, values_by_name)
    return written


# What a new run's INSERT leaves to the statement: the run's definition and its first event's data (which names it).
_RUN_OWN = ("definition",)
_EVENT_OWN = ("id", "data")
# The columns in which a new run's steps differ: sent as two arrays, every other column once for all of them.
_STEP_OWN = ("name", "index")


@dataclass(frozen=True, slots=True)
class _InsertedFields:
    """The columns the start's statement inserts, in the order of its text and of its parameters."""

    run: tuple[Field[Any, Any], ...]
    step: tuple[Field[Any, Any], ...]  # every column of a step row but its id, in table order
    step_shared: tuple[Field[Any, Any], ...]  # those of them that every new step has alike
    event: tuple[Field[Any, Any], ...]


@functools.cache
def _inserted_fields() -> _InsertedFields:
    def fields(model: type[Model], leave_out: tuple[str, ...]) -> tuple[Field[Any, Any], ...]:
        return tuple(f for f in model._meta.concrete_fields if f.name not in leave_out)

    step = fields(SagaStepRun, ("id",))
    return _InsertedFields(
        run=fields(SagaRun, _RUN_OWN),
        step=step,
        step_shared=tuple(f for f in step if f.name not in _STEP_OWN),
        event=fields(SagaEvent, _EVENT_OWN),
    )


@functools.cache
def _insert_run_sql() -> str:
    """The start's statement, one text for every saga whatever its steps: psycopg caches the parsing of a
    statement only while it has at most 50 parameters, and PostgreSQL plans a prepared one once."""
    inserted = _inserted_fields()

    def row(model: type[Model], fields: tuple[Field[Any, Any], ...]) -> str:
        return "(" + ", ".join(_typed(model, f.name) for f in fields) + ")"

    def columns(fields: tuple[Field[Any, Any], ...]) -> str:
        return ", ".join(_quote(f.column) for f in fields)

    definitions, runs, steps, events = (
        _quote(m._meta.db_table) for m in (SagaDefinition, SagaRun, SagaStepRun, SagaEvent)
    )
    definition_id, data = _quote(_field(SagaRun, "definition").column), _quote(_field(SagaEvent, "data").column)
    step_values = ", ".join(
        f"t.{f.name}" if f.name in _STEP_OWN else _typed(SagaStepRun, f.name) for f in inserted.step
    )
    name_type, index_type = (_field(SagaStepRun, name).db_type(connection) for name in _STEP_OWN)
    return (
        f"WITH d AS (SELECT id FROM {definitions} WHERE name = %s AND version = %s AND spec_hash = %s), "
        f"r AS (INSERT INTO {runs} ({columns(inserted.run)}, {definition_id}) "
        f"SELECT v.*, d.id FROM d, (VALUES {row(SagaRun, inserted.run)}) AS v RETURNING id), "
        f"s AS (INSERT INTO {steps} ({columns(inserted.step)}) SELECT {step_values} "
        f"FROM unnest(CAST(%s AS {name_type}[]), CAST(%s AS {index_type}[])) AS t(name, index) "
        "WHERE EXISTS (SELECT 1 FROM d)), "
        f"e AS (INSERT INTO {events} ({columns(inserted.event)}, {data}) SELECT v.*, "
        "jsonb_set(CAST(%s AS jsonb), '{definition}', to_jsonb(d.id)) "
        f"FROM d, (VALUES {row(SagaEvent, inserted.event)}) AS v RETURNING id) "
        "SELECT d.id, (SELECT id FROM e) FROM d"
    )


def insert_run(run: SagaRun, steps: list[SagaStepRun], started: SagaEvent, definition: DefinitionKey) -> bool:
    """Insert a new ``run`` pointing at the stored ``definition``, its ``steps`` and its first event ``started``
    (its data gains the definition's id under "definition") in one statement, and set the ids it learns on them;
    False, with nothing inserted, when no definition with that name, version and hash is stored. The steps must
    differ only in their name and index (as new steps do).

    One round trip where the ORM takes five (the definition's read, three INSERTs, the COMMIT): every start
    pays it, often inside a web request. Outside a transaction the statement is atomic by itself."""
    db = _db()

    inserted = _inserted_fields()

    def prepared(fields: tuple[Field[Any, Any], ...], obj: Model) -> list[Any]:
        return [f.get_db_prep_save(getattr(obj, f.attname), db) for f in fields]

    params: list[Any] = [definition.name, definition.version, definition.spec_hash]
    params += prepared(inserted.run, run)
    params += prepared(inserted.step_shared, steps[0]) if steps else [None] * len(inserted.step_shared)
    params += [[step.name for step in steps], [step.index for step in steps]]
    params.append(_field(SagaEvent, "data").get_db_prep_save(started.data, db))
    params += prepared(inserted.event, started)
    with db.cursor() as cursor:
        cursor.execute(_insert_run_sql(), params)
        row = cursor.fetchone()
    if row is None:
        return False
    definition_id, event_id = row
    run.definition_id = definition_id
    run._state.adding, run._state.db = False, db.alias
    started.data = {**started.data, "definition": definition_id}
    started.pk = event_id
    started._state.adding, started._state.db = False, db.alias
    return True
