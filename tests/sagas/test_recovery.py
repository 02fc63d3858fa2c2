"""The reaper's decisions, made against the database (the fault suite proves them on real workers)."""

from __future__ import annotations

import io
import json
import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

import sagas
from participants.checkout.sagas import PlaceOrder
from sagas import leases, recovery, services
from sagas.models import SagaEvent, SagaRun
from sagas.services.redrive import run_redrive_by_operator
from sagas.states import EventType, RunStatus, StepStatus
from tests import history
from tests.factories import SagaRunFactory
from tests.metrics import publishes

pytestmark = pytest.mark.django_db

LONG_AGO = timedelta(hours=1)


def make_stale(run: SagaRun, age: timedelta = LONG_AGO) -> None:
    history.make_stale(run, age)


def redriven(run: SagaRun) -> list[SagaEvent]:
    return list(SagaEvent.objects.filter(run=run, type=EventType.SAGA_REDRIVEN))


def test_with_nothing_stuck_a_tick_costs_three_queries() -> None:
    SagaRunFactory(status=RunStatus.EXECUTING)  # moving
    SagaRunFactory(status=RunStatus.COMPLETED)
    stale_done = SagaRunFactory(status=RunStatus.COMPENSATED)
    make_stale(stale_done)
    with CaptureQueriesContext(connection) as captured:
        assert recovery.reap() == []

    # The savepoints stand for the transaction that holds the JIT setting (BEGIN and COMMIT outside a test).
    statements = [q["sql"] for q in captured.captured_queries if "SAVEPOINT" not in q["sql"]]
    # Unpublished outbox messages, published ones not yet settled, and stuck runs, planned without JIT.
    assert [s.split(" FROM ")[1].split()[0] if " FROM " in s else s for s in statements] == [
        '"sagas_sagaoutbox"',
        '"sagas_sagaoutbox"',
        "SET LOCAL jit = off",
        '"sagas_sagarun"',
    ]


def test_a_pending_run_whose_dispatch_was_lost_is_published_again(django_capture_on_commit_callbacks) -> None:
    run = SagaRunFactory(status=RunStatus.PENDING)
    make_stale(run)
    with django_capture_on_commit_callbacks() as callbacks:
        (outcome,) = recovery.reap()
    assert outcome.action == "publish the steps again (dispatch lost)"
    assert len(publishes(callbacks)) == 1
    (event,) = redriven(run)
    assert (event.actor, event.data["action"]) == ("reaper", outcome.action)


def test_a_run_whose_finish_message_was_lost_completes() -> None:
    run = SagaRunFactory(status=RunStatus.EXECUTING, step_statuses=dict.fromkeys(_steps(), StepStatus.SUCCEEDED))
    make_stale(run)
    recovery.reap()
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED


def test_a_failed_step_whose_errback_was_lost_starts_compensation(django_capture_on_commit_callbacks) -> None:
    run = SagaRunFactory(
        status=RunStatus.EXECUTING,
        step_statuses={"create_order": StepStatus.SUCCEEDED, "reserve_stock": StepStatus.FAILED},
    )
    make_stale(run)
    with django_capture_on_commit_callbacks() as callbacks:
        recovery.reap()
    run.refresh_from_db()
    assert run.status == RunStatus.COMPENSATING
    assert run.steps.get(name="create_order").status == StepStatus.COMPENSATING
    assert len(publishes(callbacks)) == 1  # create_order's compensation


def test_a_step_still_within_its_hard_limit_is_left_running(settings) -> None:
    settings.SAGAS = {**settings.SAGAS, "LEASE_SECONDS": 1}
    run = SagaRunFactory(status=RunStatus.EXECUTING, step_statuses={"create_order": StepStatus.RUNNING})
    services.step_claim(run_id=run.pk, step="create_order", task_id="t")  # an attempt starts now
    SagaRun.objects.filter(pk=run.pk).update(updated_at=timezone.now() - timedelta(seconds=5))
    assert recovery.reap() == []  # stale by the lease, but the attempt may still be running


def test_a_step_whose_attempt_vanished_runs_again_as_the_next_attempt(django_capture_on_commit_callbacks) -> None:
    run = SagaRunFactory(status=RunStatus.EXECUTING, step_statuses={"create_order": StepStatus.RUNNING})
    run.steps.filter(name="create_order").update(attempts=1)
    SagaEvent.objects.create(run=run, seq=1, type=EventType.STEP_STARTED, step="create_order")
    SagaRun.objects.filter(pk=run.pk).update(lock_version=1)
    make_stale(run)
    with django_capture_on_commit_callbacks() as callbacks:
        (outcome,) = recovery.reap()
    assert outcome.action == "run step create_order again (attempt lost)"
    (publish,) = publishes(callbacks)
    assert publish.canvas.tasks[0].options["task_id"] == f"{run.pk}:create_order:2"  # the next attempt


def test_a_retry_not_yet_due_is_waited_for(settings) -> None:
    run = SagaRunFactory(status=RunStatus.EXECUTING, step_statuses={"create_order": StepStatus.RUNNING})
    run.steps.filter(name="create_order").update(
        attempts=1,
        failures=[{"kind": "action", "attempt": 1, "retry_in": 3600, "at": timezone.now().isoformat()}],
    )
    make_stale(run)
    assert recovery.reap() == []


def test_a_run_past_its_deadline_times_out(django_capture_on_commit_callbacks) -> None:
    run = SagaRunFactory(
        status=RunStatus.EXECUTING,
        deadline=timezone.now() - timedelta(seconds=1),
        step_statuses={"create_order": StepStatus.SUCCEEDED},
    )
    with django_capture_on_commit_callbacks():
        (outcome,) = recovery.reap()
    assert outcome.action == "time out: deadline passed"
    run.refresh_from_db()
    assert run.status == RunStatus.COMPENSATING
    assert SagaEvent.objects.filter(run=run, type=EventType.SAGA_TIMED_OUT).exists()


def test_a_lost_compensation_is_published_again(django_capture_on_commit_callbacks) -> None:
    run = SagaRunFactory(
        status=RunStatus.COMPENSATING,
        step_statuses={"create_order": StepStatus.COMPENSATING, "reserve_stock": StepStatus.COMPENSATED},
    )
    run.steps.filter(name="create_order").update(compensation_attempts=1)
    make_stale(run)
    with django_capture_on_commit_callbacks() as callbacks:
        (outcome,) = recovery.reap()
    assert outcome.action == "move compensation on (create_order)"
    assert len(publishes(callbacks)) == 1


def test_parked_runs_are_left_to_a_person_and_retry_unparks_them(django_capture_on_commit_callbacks) -> None:
    run = SagaRunFactory(status=RunStatus.PENDING)
    services.run_park(run_id=run.pk, step="create_order", task_name="saga.orders.place_order.make_order")
    run.refresh_from_db()
    assert "'saga.orders.place_order.make_order' is not registered" in run.parked_reason
    make_stale(run)
    assert recovery.reap() == []

    with django_capture_on_commit_callbacks() as callbacks:
        sagas.retry(run.pk, reason="deployed the renamed task back", actor="gina")
    run.refresh_from_db()
    assert run.parked_reason == ""
    assert len(publishes(callbacks)) == 1
    (event,) = redriven(run)
    assert (event.actor, event.data["reason"]) == ("gina", "deployed the renamed task back")


@pytest.mark.django_db(transaction=True)
def test_a_stuck_run_is_redriven_once_by_racing_reapers_and_operators(run_concurrently) -> None:
    run = SagaRunFactory(status=RunStatus.PENDING)
    make_stale(run)

    def operator() -> object:
        try:
            return sagas.retry(run.pk, reason="stuck", actor="hana")
        except sagas.InvalidTransition as exc:
            return exc

    run_concurrently(recovery.reap, recovery.reap, operator, recovery.reap)
    assert len(redriven(run)) == 1


def test_dry_run_changes_nothing() -> None:
    run = SagaRunFactory(status=RunStatus.PENDING)
    make_stale(run)
    out = io.StringIO()
    call_command("saga_recover", "--dry-run", "--json", stdout=out)
    assert json.loads(out.getvalue()) == [{"run": str(run.pk), "action": "publish the steps again (dispatch lost)"}]
    assert not redriven(run)


def test_saga_recover_says_when_nothing_is_stuck() -> None:
    out = io.StringIO()
    call_command("saga_recover", stdout=out)
    assert out.getvalue().strip() == "Nothing stuck."


def test_the_reaper_is_on_the_beat_schedule() -> None:
    from django_celery_beat.models import PeriodicTask

    task = PeriodicTask.objects.get(name=recovery.REAPER_SCHEDULE_NAME)
    assert task.task == "sagas.reap"
    assert task.enabled
    assert task.interval.every == 15


def _steps() -> list[str]:
    from participants.checkout.sagas import PlaceOrder

    return [step.name for step in PlaceOrder.steps]


def test_a_parked_run_rebuilds_from_its_events_with_its_reason(django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks():
        run = PlaceOrder.start({"customer_email": "a@example.com"})
    services.run_park(run_id=run.pk, step="create_order", task_name="saga.orders.place_order.make_order")
    run.refresh_from_db()
    rebuilt = sagas.rebuild(run.pk)
    assert rebuilt.parked_reason == run.parked_reason
    assert "is not registered" in rebuilt.parked_reason
    assert rebuilt.differences(run) == []


def _backoff_seconds(run: SagaRun) -> float:
    run.refresh_from_db()
    assert run.redrive_seq == run.lock_version  # the re-drive is the run's last change
    return round((run.redrive_after - timezone.now()).total_seconds() / sagas.conf.sagas_settings.LEASE_SECONDS)


def test_a_run_re_driven_without_progress_waits_twice_as_long_before_each_next_re_drive(
    django_capture_on_commit_callbacks,
) -> None:
    """A step message behind a long queue looks lost after a lease: publishing it again every lease would only
    make the queue longer. After 1, 2, 4 and then at most 8 leases."""
    run = SagaRunFactory(status=RunStatus.PENDING)
    waits = []
    for _ in range(5):
        make_stale(run)
        with django_capture_on_commit_callbacks():
            (outcome,) = recovery.reap()
        assert outcome.action == "publish the steps again (dispatch lost)"
        waits.append(_backoff_seconds(run))
        make_stale(run)  # a lease and more passed without progress, but not the backoff
        assert recovery.reap() == []
        assert services.run_redrive(run_id=run.pk).action == ""  # nor when asked directly
        SagaRun.objects.filter(pk=run.pk).update(redrive_after=timezone.now())  # the backoff passed

    assert waits == [1, 2, 4, 8, 8]
    assert len(redriven(run)) == 5


def test_progress_after_a_re_drive_ends_its_backoff(django_capture_on_commit_callbacks) -> None:
    run = SagaRunFactory(status=RunStatus.PENDING)
    for _ in range(3):
        make_stale(run)
        SagaRun.objects.filter(pk=run.pk).update(redrive_after=timezone.now())  # any backoff passed
        with django_capture_on_commit_callbacks():
            recovery.reap()
    assert _backoff_seconds(run) == 4

    claim = services.step_claim(run_id=run.pk, step="create_order", task_id="t-1")  # the message came, at last
    with django_capture_on_commit_callbacks():
        services.step_succeed(run_id=run.pk, step="create_order", output={}, claim=claim)
    make_stale(run)  # then the next step's message was lost

    with django_capture_on_commit_callbacks():
        (outcome,) = recovery.reap()
    assert outcome.action == "publish step reserve_stock again (message lost)"
    assert _backoff_seconds(run) == 1  # and the count starts again


def test_an_operator_retry_ignores_the_backoff(django_capture_on_commit_callbacks) -> None:
    run = SagaRunFactory(status=RunStatus.PENDING)
    make_stale(run)
    with django_capture_on_commit_callbacks():
        recovery.reap()
    make_stale(run)
    with django_capture_on_commit_callbacks():
        run = run_redrive_by_operator(run_id=run.pk, reason="looked stuck", actor="kim")
    assert len(redriven(run)) == 2
    assert run.redrive_after is None  # a person's re-drive starts no backoff


def test_a_run_backing_off_is_re_driven_at_once_after_redis_lost_its_data(django_capture_on_commit_callbacks) -> None:
    run = SagaRunFactory(status=RunStatus.PENDING)
    make_stale(run)
    with django_capture_on_commit_callbacks():
        recovery.reap()
    make_stale(run)  # a lease and more without progress, but within the backoff: its message may be queued
    assert recovery.reap() == []

    leases.client().delete(leases.memory_key())  # Redis restarted empty: the re-drive's message is gone
    with django_capture_on_commit_callbacks() as callbacks:
        (outcome,) = recovery.reap()

    assert outcome.action == "publish the steps again (dispatch lost)"
    assert redriven(run)[-1].data["reason"] == "no progress since Redis lost its data"
    assert len(publishes(callbacks)) == 1
    lease = sagas.conf.sagas_settings.LEASE_SECONDS
    leases.client().set(leases.memory_key(), repr(time.time() - 3 * lease))  # the loss, 3 leases ago
    make_stale(run, timedelta(seconds=2 * lease))  # the re-drive, after it
    assert recovery.reap() == []  # re-driven since the loss: the backoff holds again
