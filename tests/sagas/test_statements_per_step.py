"""What a saga costs the database on its success path, counted statement by statement: a regression here is a
regression of `make bench` (see bench/README.md), caught without timing anything."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

import sagas
from sagas import choreography, registry, runner
from sagas.models import SagaEvent, SagaRun
from sagas.outcomes import Outcome
from sagas.states import RunStatus, StepStatus

pytestmark = pytest.mark.django_db(transaction=True)  # real transactions: no savepoints in the counts


def noop(ctx: sagas.StepContext) -> dict[str, int]:
    return {ctx.step: ctx.attempt}


def undo(ctx: sagas.StepContext) -> None:
    return None


@pytest.fixture
def three_steps(settings, monkeypatch) -> Iterator[type[sagas.Saga]]:
    # Snapshots and subscribers add their own writes (counted by their own tests): none here.
    settings.SAGAS = {**settings.SAGAS, "SNAPSHOT_EVERY": 0}
    monkeypatch.setattr(choreography, "receivers_of", lambda topic, step=False: [])
    steps = [sagas.Step(noop, undo, name="a"), sagas.Step(noop, undo, name="b"), sagas.Step(noop, name="c")]
    cls = type("Counted", (sagas.Saga,), {"__module__": __name__, "name": "tests.counted", "steps": steps})
    yield cls
    registry.unregister(cls)


def statements(captured: CaptureQueriesContext) -> list[str]:
    return [query["sql"].split(None, 1)[0].upper() for query in captured.captured_queries]


def test_a_step_costs_one_read_and_one_write(three_steps, django_capture_on_commit_callbacks, settings):
    settings.SAGAS = {**settings.SAGAS, "WRITE_PATH": "auto"}  # the PostgreSQL statement (also under test-portable)
    with django_capture_on_commit_callbacks():
        run = three_steps.start({"order": 1})
    counts = {}
    for step in ("a", "b", "c"):
        with CaptureQueriesContext(connection) as captured:
            result = runner.execute_step(run_id=str(run.pk), step=step, task_id=f"{run.pk}:{step}:1")
        assert result.outcome == Outcome.CONTINUE
        counts[step] = statements(captured)

    # The claim reads the run with its steps (one SELECT; its lease and attempt count are Redis's); the outcome
    # is one statement, its own transaction: the attempt's start and success, the run's progress (the first step
    # moves it to executing, the last one completes it), the events of all of it.
    assert counts == {"a": ["SELECT", "WITH"], "b": ["SELECT", "WITH"], "c": ["SELECT", "WITH"]}
    run = SagaRun.objects.get(pk=run.pk)
    assert run.status == RunStatus.COMPLETED
    assert set(run.steps.values_list("status", "attempts")) == {(StepStatus.SUCCEEDED, 1)}
    assert run.steps.get(name="c").output == {"c": 1}
    events = list(SagaEvent.objects.filter(run=run).order_by("seq").values_list("seq", "type", "step"))
    assert events == [
        (1, "SagaStarted", ""),
        (2, "SagaExecuting", ""),
        (3, "StepStarted", "a"),
        (4, "StepSucceeded", "a"),
        (5, "StepStarted", "b"),
        (6, "StepSucceeded", "b"),
        (7, "StepStarted", "c"),
        (8, "StepSucceeded", "c"),
        (9, "SagaCompleted", ""),
    ]
    assert run.lock_version == 9


@pytest.mark.parametrize("write_path", ["auto", "portable"])
def test_each_event_of_the_success_path_names_its_cause(
    three_steps, django_capture_on_commit_callbacks, settings, write_path
):
    settings.SAGAS = {**settings.SAGAS, "WRITE_PATH": write_path}
    with django_capture_on_commit_callbacks():
        run = three_steps.start({})
    for step in ("a", "b", "c"):
        runner.execute_step(run_id=str(run.pk), step=step, task_id=f"{run.pk}:{step}:1")
    events = {e.seq: e for e in SagaEvent.objects.filter(run=run)}
    causes = {seq: events[seq].causation_id and next(s for s, e in events.items() if e.pk == events[seq].causation_id)
              for seq in events}  # fmt: skip
    # Executing follows the start; an attempt follows the step before it; a success follows its attempt;
    # the completion follows the last success.
    assert causes == {1: None, 2: 1, 3: 2, 4: 3, 5: 4, 6: 5, 7: 6, 8: 7, 9: 8}


@pytest.mark.parametrize(
    ("write_path", "expected"),
    [
        # One statement: the definition's check, the run, its steps and SagaStarted, atomic by itself.
        ("auto", ["WITH"]),
        # The same in one transaction of ORM statements (the steps in one bulk INSERT).
        ("portable", ["BEGIN", "SELECT", "INSERT", "INSERT", "INSERT", "COMMIT"]),
    ],
)
def test_the_start_costs_one_statement(three_steps, django_capture_on_commit_callbacks, settings, write_path, expected):
    settings.SAGAS = {**settings.SAGAS, "WRITE_PATH": write_path}
    three_steps.start({})  # the definition row is stored once
    with django_capture_on_commit_callbacks(), CaptureQueriesContext(connection) as captured:
        run = three_steps.start({"order": 2})
    assert statements(captured) == expected
    stored = SagaRun.objects.get(pk=run.pk)
    assert stored.definition_id == run.definition_id is not None
    assert stored.definition.name == "tests.counted"
    assert list(stored.steps.order_by("index").values_list("name", "status")) == [
        ("a", StepStatus.PENDING), ("b", StepStatus.PENDING), ("c", StepStatus.PENDING)
    ]  # fmt: skip
    started = SagaEvent.objects.get(run=stored)
    assert started.pk == run.events.get().pk
    assert started.data["definition"] == run.definition_id
    assert started.data["payload"] == {"order": 2}


def test_the_first_start_of_a_definition_stores_it_then_inserts_the_run(
    three_steps, django_capture_on_commit_callbacks, settings
):
    settings.SAGAS = {**settings.SAGAS, "WRITE_PATH": "auto"}  # the PostgreSQL statement (also under test-portable)
    with django_capture_on_commit_callbacks(), CaptureQueriesContext(connection) as captured:
        run = three_steps.start({})
    # The insert finds no definition and inserts nothing; the definition is stored; the insert again.
    first, last = statements(captured)[0], statements(captured)[-1]
    assert (first, last) == ("WITH", "WITH")
    assert SagaRun.objects.get(pk=run.pk).definition.spec_hash == three_steps.spec_hash()
    assert SagaEvent.objects.filter(run_id=run.pk).count() == 1


def test_the_portable_write_path_writes_what_the_statement_writes(three_steps, settings):
    """The same saga through both implementations of the write path, on PostgreSQL: the same rows and events."""
    written = {}
    for write_path in ("auto", "portable"):
        settings.SAGAS = {**settings.SAGAS, "WRITE_PATH": write_path}
        run = three_steps.start({"order": 3})
        with CaptureQueriesContext(connection) as captured:
            for step in ("a", "b", "c"):
                runner.execute_step(run_id=str(run.pk), step=step, task_id=f"{run.pk}:{step}:1")
        run = SagaRun.objects.get(pk=run.pk)
        steps = list(run.steps.order_by("index").values_list("name", "status", "attempts", "output", "task_id"))
        events = list(SagaEvent.objects.filter(run=run).order_by("seq").values_list("seq", "type", "step", "data"))
        written[write_path] = (run.status, run.lock_version, steps, events, statements(captured).count("WITH"))
    auto, portable = written["auto"], written["portable"]
    assert auto[:2] == portable[:2] == (RunStatus.COMPLETED, 9)
    assert [s[:4] for s in auto[2]] == [s[:4] for s in portable[2]]

    def comparable(events: list) -> list:  # after SagaStarted (it names its run), without task ids (named by run)
        return [(seq, kind, name, {k: v for k, v in d.items() if k != "task_id"}) for seq, kind, name, d in events]

    assert comparable(auto[3][1:]) == comparable(portable[3][1:])
    assert auto[4] == 3  # one statement per step
    assert portable[4] == 0  # and none at all on the portable path
