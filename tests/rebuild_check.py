"""The event log is the source of truth: every run the framework wrote rebuilds from its events to its rows.

Run after every test that used the database (tests/conftest.py), before the test's data goes away, and
summed up at the end of the session. Runs a test planted directly (factories, bulk_create, hand-written
events) have no start event written by the framework and are only counted.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass, field

from django.db import connection, transaction

from sagas import eventlog
from sagas.models import SagaEvent, SagaRun, SagaSnapshot
from sagas.services.context import IN_DOUBT
from sagas.states import EventType


@dataclass
class Tally:
    runs: int = 0  # framework runs rebuilt and compared
    events: int = 0
    snapshots: int = 0  # snapshots compared with the fold at their seq
    planted: int = 0  # runs a test planted without the framework's start event
    tests: int = 0
    mismatches: list[str] = field(default_factory=list)


TALLY = Tally()


def check_every_run() -> list[str]:
    """Rebuild every framework-written run in the database from its events; the differences found.

    Reads in one REPEATABLE READ snapshot when it can, so a worker committing meanwhile cannot make rows
    and events look out of step.
    """
    if connection.in_atomic_block:  # a test inside a transaction: nobody else can write what it sees
        return _check()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        return _check()


def _check() -> list[str]:
    started = SagaEvent.objects.filter(seq=1, type=EventType.SAGA_STARTED, data__has_key="definition")
    runs = list(SagaRun.objects.filter(pk__in=started.values("run_id")).prefetch_related("steps"))
    TALLY.planted += SagaRun.objects.count() - len(runs)
    events = defaultdict(list)
    for event in SagaEvent.objects.filter(run__in=[run.pk for run in runs]).order_by("run_id", "seq"):
        events[event.run_id].append(event)
    snapshots = defaultdict(dict)
    for snapshot in SagaSnapshot.objects.filter(run__in=[run.pk for run in runs]):
        snapshots[snapshot.run_id][snapshot.seq] = snapshot.state
    found = []
    for run in runs:
        state = eventlog.RunState(id=run.pk)
        for event in events[run.pk]:
            state.apply(event)
            taken = snapshots[run.pk].get(event.seq)
            if taken is not None:
                TALLY.snapshots += 1
                if taken != state.to_json():
                    found.append(f"run {run.pk}: snapshot at #{event.seq} differs from the fold of the events")
        found += [f"run {run.pk} ({run.saga_name}): {difference}" for difference in state.differences(run)]
        found += [f"run {run.pk} ({run.saga_name}): {problem}" for problem in attempt_problems(run, events[run.pk])]
        TALLY.runs += 1
        TALLY.events += len(events[run.pk])
    TALLY.mismatches += found
    return found


# The codes of a failure recorded for an attempt that never reported back: its start may never have been recorded.
LOST_ATTEMPT_CODES = frozenset({"attempts_lost", "attempt_lost", IN_DOUBT})


def attempt_problems(run: SagaRun, events: list[SagaEvent]) -> list[str]:
    """What the fold cannot check of a step's attempt numbers, since it takes each one from its start event (an
    attempt killed before its start was recorded leaves a gap on purpose): along a step's StepStarted events the
    numbers strictly increase; the step's stored ``attempts`` is the highest of them (0 when none); and the attempt of
    every failure of its action was started or is on record as lost (0: a failure that was no attempt, such as a
    Wait's timeout). A writer that stores a wrong attempt number breaks one of these."""
    started: dict[str, list[int]] = defaultdict(list)
    for event in events:
        if event.type == EventType.STEP_STARTED and event.step:
            numbers = started[event.step]
            numbers.append(event.data.get("attempt", (numbers[-1] if numbers else 0) + 1))  # as the fold reads it
    found = []
    for step in run.steps.all():
        numbers = started.get(step.name, [])
        if any(later <= earlier for earlier, later in itertools.pairwise(numbers)):
            found.append(f"step {step.name}: attempt numbers along its starts do not increase: {numbers}")
        if step.attempts != max(numbers, default=0):
            found.append(f"step {step.name}: attempts {step.attempts}, but its starts number {numbers}")
        for failure in step.failures:
            attempt = failure.get("attempt") or 0
            if failure.get("kind") != "action" or not attempt or attempt in numbers:
                continue
            if failure.get("code") not in LOST_ATTEMPT_CODES:
                found.append(f"step {step.name}: a failure of attempt {attempt}, which never started ({numbers})")
    return found
