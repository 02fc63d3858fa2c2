"""Event sourcing: correlation and causation on every event, rebuild from events and snapshots, append-only."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction

import sagas
from sagas import runner
from sagas.models import SagaEvent, SagaRun, SagaSnapshot
from sagas.states import EventType, RunStatus, StepStatus
from tests.testapp.sagas import Flaky, LongRetries

pytestmark = pytest.mark.django_db


def flaky_run_with_attempts(
    attempts: int, django_capture_on_commit_callbacks, saga: type[sagas.Saga] = Flaky
) -> SagaRun:
    """A run whose `flaky` step failed ``attempts - 1`` times and then succeeded, run in this process."""
    with django_capture_on_commit_callbacks():
        run = saga.start({"fail_times": attempts - 1}, correlation_id="req-42")
    assert runner.execute_step(run_id=str(run.pk), step="first", task_id=f"{run.pk}:first:1").outcome == "continue"
    for attempt in range(1, attempts + 1):
        result = runner.execute_step(run_id=str(run.pk), step="flaky", task_id=f"{run.pk}:flaky:{attempt}")
        assert result.outcome == ("continue" if attempt == attempts else "retry")
    return SagaRun.objects.get(pk=run.pk)


def test_every_event_carries_the_runs_correlation_id_and_a_cause(django_capture_on_commit_callbacks) -> None:
    run = flaky_run_with_attempts(3, django_capture_on_commit_callbacks)

    events = list(run.events.order_by("seq"))
    assert {event.correlation_id for event in events} == {"req-42"}
    assert events[0].type == EventType.SAGA_STARTED and events[0].causation is None  # noqa: PT018
    assert all(event.causation is not None and event.causation.seq < event.seq for event in events[1:])
    by_seq = {event.seq: event for event in events}
    # Each attempt follows from the failure before it; each outcome from the attempt it ends.
    attempts = [e for e in events if e.step == "flaky" and e.type == EventType.STEP_STARTED]
    assert [by_seq[e.causation.seq].type for e in attempts] == [
        EventType.STEP_SUCCEEDED,  # `first` succeeded, so `flaky` could start
        EventType.STEP_ATTEMPT_FAILED,
        EventType.STEP_ATTEMPT_FAILED,
    ]
    completed = run.events.get(type=EventType.SAGA_COMPLETED)
    assert (completed.causation.type, completed.causation.step) == (EventType.STEP_SUCCEEDED, "flaky")


def test_rebuild_folds_the_events_into_the_stored_state(django_capture_on_commit_callbacks) -> None:
    run = flaky_run_with_attempts(3, django_capture_on_commit_callbacks)

    state = sagas.rebuild(run.pk)

    assert state.differences(run) == []
    assert (state.status, state.steps["flaky"].attempts, len(state.steps["flaky"].failures)) == (
        RunStatus.COMPLETED,
        3,
        2,
    )
    assert state.steps["flaky"].output == {"flaky_calls": 3}


def test_rebuild_notices_a_row_that_was_changed_behind_the_logs_back(django_capture_on_commit_callbacks) -> None:
    run = flaky_run_with_attempts(1, django_capture_on_commit_callbacks)
    run.steps.filter(name="flaky").update(status=StepStatus.FAILED, attempts=9)

    differences = sagas.rebuild(run.pk).differences(run)

    assert "step flaky.status: rebuilt 'succeeded', stored 'failed'" in differences
    assert "step flaky.attempts: rebuilt 1, stored 9" in differences
    run.steps.filter(name="flaky").update(status=StepStatus.SUCCEEDED, attempts=1)  # the session check reads it too


def test_a_run_of_a_thousand_events_rebuilds_from_its_latest_snapshot(
    django_capture_on_commit_callbacks, settings
) -> None:
    settings.SAGAS = {**settings.SAGAS, "SNAPSHOT_EVERY": 100}
    run = flaky_run_with_attempts(499, django_capture_on_commit_callbacks, LongRetries)
    assert run.lock_version >= 1000

    state = sagas.rebuild(run.pk)

    assert state.snapshot_seq == run.lock_version - run.lock_version % 100
    assert state.folded < 100  # only the events after the snapshot
    assert state.differences(run) == []
    assert SagaSnapshot.objects.filter(run=run).count() == run.lock_version // 100
    assert state.steps["flaky"].attempts == 499


def test_rebuild_of_an_unknown_run_says_so() -> None:
    with pytest.raises(sagas.RunNotFound):
        sagas.rebuild("1b4e28ba-2fa1-11d2-883f-0016d3cca427")
    with pytest.raises(sagas.RunNotFound):
        sagas.rebuild("not-a-uuid")


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the trigger under test is PostgreSQL's")
def test_the_database_refuses_to_change_an_event(django_capture_on_commit_callbacks) -> None:
    run = flaky_run_with_attempts(1, django_capture_on_commit_callbacks)

    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
        SagaEvent.objects.filter(run=run, seq=1).update(data={"rewritten": True})
    event = SagaEvent.objects.get(run=run, seq=1)
    with pytest.raises(ValueError, match="append-only"):
        event.save()
    assert SagaEvent.objects.get(run=run, seq=1).data["saga"] == Flaky.name
