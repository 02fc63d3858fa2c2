"""Claims and records of steps and compensations: what each message may do in each state (database, no worker)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest
from django.db import OperationalError

from sagas import leases, services
from sagas.conf import sagas_settings
from sagas.failures import Failure
from sagas.models import SagaEvent, SagaRun
from sagas.outcomes import Outcome
from sagas.services import _statement
from sagas.states import EventType, RunStatus, StepStatus
from tests.factories import SagaRunFactory
from tests.metrics import publishes

pytestmark = pytest.mark.django_db

DONE_TWO = {"create_order": StepStatus.SUCCEEDED, "reserve_stock": StepStatus.SUCCEEDED}


def test_a_claim_takes_the_lease_and_the_outcome_records_the_start(django_capture_on_commit_callbacks) -> None:
    run = SagaRunFactory(status=RunStatus.PENDING, payload={"customer_email": "a@example.com"})
    claim = services.step_claim(run_id=run.pk, step="create_order", task_id="t-1")

    assert claim.outcome is Outcome.RUN
    assert claim.context.attempt == 1
    assert claim.context.idempotency_key == f"{run.pk}:create_order"
    assert claim.context.payload == {"customer_email": "a@example.com"}
    # Nothing written yet: the attempt is the lease's (the admin shows the step running from it).
    run.refresh_from_db()
    step = run.steps.get(name="create_order")
    assert (run.status, step.status, step.attempts) == (RunStatus.PENDING, StepStatus.PENDING, 0)
    assert not SagaEvent.objects.filter(run=run).exists()
    (holder,) = leases.holders(run.pk, ["create_order"]).values()
    assert (holder.task_id, holder.attempt, holder.pid) == ("t-1", 1, os.getpid())

    with django_capture_on_commit_callbacks(execute=True):
        assert services.step_succeed(run_id=run.pk, step="create_order", output={"order_id": 1}, claim=claim)
    run.refresh_from_db()
    step = run.steps.get(name="create_order")
    assert (run.status, step.status, step.attempts, step.task_id) == (RunStatus.EXECUTING, "succeeded", 1, "t-1")
    assert list(SagaEvent.objects.filter(run=run).order_by("seq").values_list("type", flat=True)) == [
        EventType.SAGA_EXECUTING,
        EventType.STEP_STARTED,
        EventType.STEP_SUCCEEDED,
    ]
    assert leases.holders(run.pk, ["create_order"]) == {}  # given back
    assert leases.started(run.pk, ["create_order"]) == {"create_order": 0}  # and the count with it


def test_a_second_delivery_waits_for_the_lease_and_counts_no_attempt() -> None:
    run = SagaRunFactory(status=RunStatus.EXECUTING)
    first = services.step_claim(run_id=run.pk, step="create_order", task_id="t-1", hard_limit=30)
    second = services.step_claim(run_id=run.pk, step="create_order", task_id="t-1")

    assert first.outcome is Outcome.RUN
    assert second.outcome is Outcome.WAIT
    assert second.holder is not None
    assert second.holder.task_id == "t-1"
    # A tenth of what the lease has left (the hard limit plus LEASE_SECONDS, less the moment since it was taken).
    lease = 30 + sagas_settings.LEASE_SECONDS
    assert lease / 10 - 0.5 <= second.delay <= lease / 10
    assert leases.started(run.pk, ["create_order"]) == {"create_order": 1}


def test_the_lease_of_a_dead_process_of_this_host_is_taken_over_at_once() -> None:
    run = SagaRunFactory(status=RunStatus.EXECUTING)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    key = leases.lease_key(run.pk, "create_order")
    leases.client().set(key, f"{socket.gethostname()}|{dead.pid}|{time.time():.3f}|t-1|1", ex=600)
    leases.client().set(leases.counter_key(run.pk, "create_order"), 1, ex=600)

    claim = services.step_claim(run_id=run.pk, step="create_order", task_id="t-1")

    assert claim.outcome is Outcome.RUN
    assert claim.context.attempt == 2  # the dead process's attempt counts
    assert leases.holder(run.pk, "create_order").pid == os.getpid()


def test_a_kept_lease_is_given_back_by_the_next_steps_acquire(django_capture_on_commit_callbacks) -> None:
    """Eager dispatch: the process that recorded a success keeps its lease and gives it back with the next
    step's acquire, in the same round trip, whatever that acquire answers."""
    run = SagaRunFactory(status=RunStatus.PENDING)
    claim = services.step_claim(run_id=run.pk, step="create_order", task_id="t-1")
    with django_capture_on_commit_callbacks(execute=True):
        assert services.step_succeed(run_id=run.pk, step="create_order", output={}, claim=claim, keep_lease=True)
    assert set(leases.holders(run.pk, ["create_order"])) == {"create_order"}  # kept
    kept = leases.Handover("create_order", claim.attempt.lease)

    leases.fence(run.pk, [])  # the run is being stopped: the next step is refused, the kept lease goes all the same
    refused = services.step_claim(run_id=run.pk, step="reserve_stock", task_id="t-2", previous=kept)

    assert refused.outcome is Outcome.WAIT
    assert leases.holders(run.pk, ["create_order", "reserve_stock"]) == {}
    assert leases.started(run.pk, ["create_order", "reserve_stock"]) == {"create_order": 0, "reserve_stock": 0}


def test_a_handover_does_not_free_a_lease_someone_else_holds_now() -> None:
    run = SagaRunFactory(status=RunStatus.EXECUTING, step_statuses=DONE_TWO)
    other = f"{socket.gethostname()}|1|{time.time():.3f}|t-9|2"
    leases.client().set(leases.lease_key(run.pk, "reserve_stock"), other, ex=600)
    stale = leases.Handover("reserve_stock", f"{socket.gethostname()}|{os.getpid()}|1.000|t-1|1")

    claim = services.step_claim(run_id=run.pk, step="charge_payment", task_id="t-3", previous=stale)

    assert claim.outcome is Outcome.RUN
    assert leases.client().get(leases.lease_key(run.pk, "reserve_stock")) == other


def test_a_run_being_stopped_refuses_new_attempts_until_the_stop_commits() -> None:
    run = SagaRunFactory(status=RunStatus.EXECUTING)
    assert leases.fence(run.pk, ["create_order"]) == {}  # a stopper put the fence up and saw nothing in flight
    claim = services.step_claim(run_id=run.pk, step="create_order", task_id="t-1")
    assert claim.outcome is Outcome.WAIT
    assert leases.started(run.pk, ["create_order"]) == {"create_order": 0}
    SagaRun.objects.filter(pk=run.pk).update(status=RunStatus.COMPENSATING)  # the stop committed
    assert services.step_claim(run_id=run.pk, step="create_order", task_id="t-1").outcome is Outcome.STOP


def test_a_step_in_flight_when_its_run_is_cancelled_is_not_skipped_and_is_undone_once_it_succeeds(
    django_capture_on_commit_callbacks,
) -> None:
    run = SagaRunFactory(status=RunStatus.EXECUTING, step_statuses={"create_order": StepStatus.SUCCEEDED})
    claim = services.step_claim(run_id=run.pk, step="reserve_stock", task_id="t-1")
    assert claim.outcome is Outcome.RUN

    services.run_cancel(run_id=run.pk, reason="customer called", actor="kim")
    steps = dict(run.steps.values_list("name", "status"))
    assert steps["reserve_stock"] == StepStatus.PENDING  # in flight: it finishes first
    assert steps["charge_payment"] == StepStatus.SKIPPED

    with django_capture_on_commit_callbacks():
        assert services.step_succeed(run_id=run.pk, step="reserve_stock", output={"r": 1}, claim=claim) is False
    steps = dict(run.steps.values_list("name", "status"))
    assert steps["reserve_stock"] == StepStatus.COMPENSATING  # recorded late, and being undone
    assert run.events.get(type=EventType.STEP_SUCCEEDED, step="reserve_stock").data["late"] is True


def test_a_step_that_arrives_before_the_steps_it_follows_is_dropped() -> None:
    run = SagaRunFactory(status=RunStatus.PENDING)
    claim = services.step_claim(run_id=run.pk, step="charge_payment", task_id="t")
    assert claim.outcome is Outcome.STOP
    run.refresh_from_db()
    assert run.status == RunStatus.PENDING
    assert not SagaEvent.objects.exists()


def test_context_carries_outputs_of_completed_steps() -> None:
    run = SagaRunFactory(status=RunStatus.EXECUTING, payload={"a": 1}, step_statuses=DONE_TWO)
    run.steps.filter(name="create_order").update(output={"order_id": 7})
    run.steps.filter(name="reserve_stock").update(output={"reservation_id": 3, "a": 2})
    claim = services.step_claim(run_id=run.pk, step="charge_payment", task_id="t")
    assert claim.context.results == {"create_order": {"order_id": 7}, "reserve_stock": {"reservation_id": 3, "a": 2}}
    assert claim.context.payload == {"a": 2, "order_id": 7, "reservation_id": 3}


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(RunStatus.EXECUTING, Outcome.CONTINUE), (RunStatus.COMPLETED, Outcome.STOP)],
)
def test_a_succeeded_step_is_never_run_again(status: str, outcome: Outcome) -> None:
    run = SagaRunFactory(status=status, step_statuses=DONE_TWO)
    assert services.step_claim(run_id=run.pk, step="reserve_stock", task_id="t").outcome is outcome
    assert run.steps.get(name="reserve_stock").attempts == 0
    assert not SagaEvent.objects.exists()


def test_attempts_that_never_reported_back_end_in_a_failure_not_a_loop() -> None:
    run = SagaRunFactory(status=RunStatus.EXECUTING, step_statuses={"create_order": StepStatus.RUNNING})
    run.steps.filter(name="create_order").update(attempts=3)  # the default budget, all lost
    claim = services.step_claim(run_id=run.pk, step="create_order", task_id="t")
    assert claim.outcome is Outcome.FAILED
    assert claim.attempt is None  # no fourth attempt was started
    step = run.steps.get(name="create_order")
    assert (step.status, step.error["code"], step.error["attempt"]) == (StepStatus.FAILED, "attempts_lost", 3)
    assert "was started 3 times and never reported back" in step.error["message"]
    assert [(e.type, e.data["to"]) for e in SagaEvent.objects.filter(run=run).order_by("seq")] == [
        (EventType.STEP_FAILED, StepStatus.FAILED)  # no StepStarted: the failure is the step's only record
    ]


def test_recording_a_success_twice_keeps_the_first_output() -> None:
    run = SagaRunFactory(status=RunStatus.EXECUTING)
    services.step_claim(run_id=run.pk, step="create_order", task_id="t")
    assert services.step_succeed(run_id=run.pk, step="create_order", output={"order_id": 1})
    assert services.step_succeed(run_id=run.pk, step="create_order", output={"order_id": 2})
    assert run.steps.get(name="create_order").output == {"order_id": 1}
    assert SagaEvent.objects.filter(type=EventType.STEP_SUCCEEDED).count() == 1


def test_errback_for_a_step_that_succeeded_does_nothing() -> None:
    run = SagaRunFactory(status=RunStatus.EXECUTING, step_statuses={"create_order": StepStatus.SUCCEEDED})
    services.run_on_step_failure(run_id=run.pk, step="create_order")
    run.refresh_from_db()
    assert run.status == RunStatus.EXECUTING
    assert not SagaEvent.objects.exists()


def test_errback_for_a_step_still_running_counts_a_failed_attempt_and_retries(
    django_capture_on_commit_callbacks,
) -> None:
    run = SagaRunFactory(status=RunStatus.EXECUTING, step_statuses={"create_order": StepStatus.RUNNING})
    run.steps.filter(name="create_order").update(attempts=1)
    with django_capture_on_commit_callbacks() as callbacks:
        services.run_on_step_failure(run_id=run.pk, step="create_order")
        services.run_on_step_failure(run_id=run.pk, step="create_order")  # the same failure reported twice
    step = run.steps.get(name="create_order")
    assert step.status == StepStatus.RUNNING
    (entry,) = step.failures
    assert (entry["kind"], entry["class"], entry["attempt"]) == ("action", "unknown", 1)
    assert entry["retry_in"] is not None
    assert SagaEvent.objects.get().type == EventType.STEP_ATTEMPT_FAILED
    assert len(publishes(callbacks)) == 1  # the rest of the chain, published again after the delay


def test_errback_for_a_running_step_out_of_attempts_puts_it_in_doubt_and_compensates(
    django_capture_on_commit_callbacks,
) -> None:
    """The last attempt failed before the runner could record why (killed at its hard limit, or the database
    went away after the service acted): what it did is not known, so the step is in doubt, not failed."""
    run = SagaRunFactory(status=RunStatus.EXECUTING, step_statuses={"create_order": StepStatus.RUNNING})
    run.steps.filter(name="create_order").update(attempts=3)
    with django_capture_on_commit_callbacks() as callbacks:
        services.run_on_step_failure(run_id=run.pk, step="create_order")
    run.refresh_from_db()
    assert run.status == RunStatus.COMPENSATING
    assert run.error["step"] == "create_order"
    step = run.steps.get(name="create_order")
    assert (step.status, [(f["code"], f["attempt"]) for f in step.failures]) == (
        StepStatus.RUNNING,
        [("", 3), ("attempt_in_doubt", 3)],  # what the errback saw (UnrecordedFailure), then the doubt
    )
    assert len(publishes(callbacks)) == 1  # attempt 4, with the same key, to learn what attempt 3 did

    claim = services.step_claim(run_id=run.pk, step="create_order", task_id="t-4")
    assert claim.outcome is Outcome.RUN
    refused = Failure.without_exception("StepFailed", "no such customer", code="refused", attempt=4)
    services.step_fail_attempt(run_id=run.pk, step="create_order", error=refused, retry_in=None, claim=claim)
    run.refresh_from_db()
    assert run.status == RunStatus.COMPENSATED  # a refusal: nothing to undo


def test_errback_firing_twice_compensates_once(django_capture_on_commit_callbacks) -> None:
    run = SagaRunFactory(status=RunStatus.EXECUTING, step_statuses={**DONE_TWO, "charge_payment": StepStatus.FAILED})
    with django_capture_on_commit_callbacks() as callbacks:
        services.run_on_step_failure(run_id=run.pk, step="charge_payment")
        services.run_on_step_failure(run_id=run.pk, step="charge_payment")
    assert len(publishes(callbacks)) == 1  # reserve_stock's compensation: the first stage
    run.refresh_from_db()
    assert run.status == RunStatus.COMPENSATING
    statuses = dict(run.steps.values_list("name", "status"))
    assert (statuses["reserve_stock"], statuses["create_order"]) == (StepStatus.COMPENSATING, StepStatus.SUCCEEDED)
    assert {statuses["schedule_shipment"], statuses["send_confirmation"]} == {StepStatus.SKIPPED}


def test_a_compensated_step_is_never_compensated_again() -> None:
    run = SagaRunFactory(status=RunStatus.COMPENSATING, step_statuses={"create_order": StepStatus.COMPENSATED})
    claim = services.compensation_claim(run_id=run.pk, step="create_order", task_id="t")
    assert claim.outcome is Outcome.STOP
    assert run.steps.get(name="create_order").compensation_attempts == 0


def test_each_settled_compensation_schedules_the_next_stage_then_ends_the_run(
    django_capture_on_commit_callbacks,
) -> None:
    run = SagaRunFactory(
        status=RunStatus.COMPENSATING,
        step_statuses={"create_order": StepStatus.SUCCEEDED, "reserve_stock": StepStatus.COMPENSATING},
    )
    with django_capture_on_commit_callbacks() as callbacks:
        services.compensation_succeed(run_id=run.pk, step="reserve_stock")
    assert run.steps.get(name="create_order").status == StepStatus.COMPENSATING
    assert len(publishes(callbacks)) == 1
    run.refresh_from_db()
    assert run.status == RunStatus.COMPENSATING
    services.compensation_succeed(run_id=run.pk, step="create_order")
    run.refresh_from_db()
    assert run.status == RunStatus.COMPENSATED


def test_a_claim_whose_read_fails_gives_the_lease_back_and_counts_no_attempt(monkeypatch) -> None:
    run = SagaRunFactory(status=RunStatus.EXECUTING)

    def gone(run_id):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(_statement, "read_run_with_steps", gone)
    with pytest.raises(OperationalError):
        services.step_claim(run_id=run.pk, step="create_order", task_id="t-1")
    assert leases.holders(run.pk, ["create_order"]) == {}
    assert leases.started(run.pk, ["create_order"]) == {"create_order": 0}


def test_a_step_running_past_its_limit_is_diagnosed_from_its_lease_and_shows_running_on_its_page() -> None:
    from datetime import timedelta

    from django.utils import timezone

    from sagas.admin.run_page import step_rows
    from sagas.diagnose import diagnose

    run = SagaRunFactory(status=RunStatus.EXECUTING)
    claim = services.step_claim(run_id=run.pk, step="create_order", task_id="t-1")
    assert claim.outcome is Outcome.RUN
    steps = list(run.steps.order_by("index"))

    (row,) = [r for r in step_rows(run, steps) if r.step.name == "create_order"]
    assert row.step.status == StepStatus.PENDING  # the row: nothing recorded yet
    assert row.in_flight.startswith("attempt 1 running for")  # the page: running, from the lease
    assert "task t-1" in row.in_flight

    later = timezone.now() + timedelta(hours=2)  # past any limit the step has
    (finding,) = [f for f in diagnose(run, now=later, check_workers=False) if f.cause == "step_over_timeout"]
    assert "'create_order'" in finding.summary
    assert "(task t-1)" in finding.summary


@pytest.mark.parametrize(
    "in_transaction",
    [pytest.param(False, marks=pytest.mark.django_db(transaction=True)), True],
    ids=["autocommit, as in a worker", "inside a transaction"],
)
def test_a_success_whose_step_moved_since_the_claim_writes_nothing_of_its_statement(in_transaction: bool) -> None:
    """The one statement's run UPDATE must not outlive a failed step guard: no seq without its event."""
    run = SagaRunFactory(status=RunStatus.EXECUTING)
    claim = services.step_claim(run_id=run.pk, step="create_order", task_id="t-1")
    # Another delivery recorded the step meanwhile (its lease lapsed, say).
    run.steps.filter(name="create_order").update(status=StepStatus.SUCCEEDED, attempts=1, output={"order_id": 9})
    before = SagaRun.objects.get(pk=run.pk).lock_version

    assert services.step_succeed(run_id=run.pk, step="create_order", output={"order_id": 1}, claim=claim)

    assert SagaRun.objects.get(pk=run.pk).lock_version == before
    assert not SagaEvent.objects.filter(run=run).exists()
    assert run.steps.get(name="create_order").output == {"order_id": 9}
