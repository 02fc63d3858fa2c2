"""The write contract's types: what a write of run and step state asks for and what it answers, whichever of
the two write paths (``_statement`` on PostgreSQL, ``_portable`` elsewhere) carries it out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from django.db import connection
from django.db.models import QuerySet

from sagas.models import SagaEvent, SagaRun, SagaStepRun

EventIds = QuerySet[SagaEvent, Any]  # a query of event ids (``.values("pk")``), sliced to its first row

# The event's columns, in the order of the INSERT (run_id, seq and correlation_id come from the run row).
EVENT_COLUMNS = ("type", "step", "data", "actor", "created_at")


class Writer(Protocol):
    """The one write path of run and step state: a guarded run UPDATE, a guarded step UPDATE and the events they
    record, all or nothing. ``_statement`` (PostgreSQL, one statement) and ``_portable`` (ORM) implement it."""

    def write(
        self,
        run_id: Any,
        *,
        run_values: dict[str, Any],
        expect_status: str | None,
        step: StepChange | None,
        events: list[dict[str, Any]],
        causes: list[Cause],
        count_unfinished: bool = False,
    ) -> Written: ...

    def insert_run(
        self, run: SagaRun, steps: list[SagaStepRun], started: SagaEvent, definition: DefinitionKey
    ) -> bool: ...


@dataclass(frozen=True, slots=True)
class DefinitionKey:
    """A saga's definition as its code declares it; a new run points at the stored row that matches all three."""

    name: str
    version: int
    spec_hash: str


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
    previous: bool = False  # the event written just before it by the same write
    # An attempt of step ``attempt_of[0]``: its own latest event, else the latest success of one of the steps it
    # depends on (``attempt_of[1]``), the run starting to execute, or a re-drive.
    attempt_of: tuple[str, frozenset[str]] | None = None


@dataclass(slots=True)
class Written:
    """What the statement wrote: the run's columns after its UPDATE, and the event's id, seq and cause."""

    run: dict[str, Any]  # the run's id, correlation_id, lock_version and the columns the write set
    event_ids: list[int]
    causation_ids: list[int | None]
    others_unfinished: int | None = None  # with ``count_unfinished``: the run's other steps not yet succeeded
    extra: dict[str, Any] = field(default_factory=dict)


class GuardFailed(Exception):
    """The run or the step was no longer in the state the change was guarded by; nothing was kept of it only
    if the caller's transaction rolls back (the run's UPDATE may have applied)."""


ATTEMPT_CAUSES = ("StepSucceeded", "SagaExecuting", "SagaRedriven")


def event_columns(event: SagaEvent) -> dict[str, Any]:
    """The values ``write`` inserts from an unsaved event (run_id, seq and correlation_id come from the run row)."""
    return {name: getattr(event, name) for name in EVENT_COLUMNS}


def stored_events(written: Written, events: list[SagaEvent]) -> list[SagaEvent]:
    """``events`` as ``write`` stored them: their ids, seqs (up to the run's new lock_version) and causes."""
    last = written.run["lock_version"]
    for number, event in enumerate(events):
        event.pk, event.causation_id = written.event_ids[number], written.causation_ids[number]
        event.seq = last - (len(events) - 1 - number)
        event._state.adding, event._state.db = False, connection.alias
    return events
