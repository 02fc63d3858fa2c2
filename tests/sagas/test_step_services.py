"""Claims and records of steps and compensations: what each message may do in each state (database, no worker)."""

from __future__ import annotations

import pytest

from sagas import services
from sagas.models import SagaEvent
from sagas.services import ClaimOutcome
from sagas.states import EventType, RunStatus, StepStatus
from tests.factories import SagaRunFactory
from tests.metrics import publishes

pytestmark = pytest.mark.django_db

DONE_TWO = {"create_order": StepStatus.SUCCEEDED, "reserve_stock": StepStatus.SUCCEEDED}


def test_first_claim_moves_the_run_to_executing_and_counts_the_attempt(django_capture_on_commit_callbacks) -> None:
    run = SagaRunFactory(status=RunStatus.PENDING, payload={"customer_email": "a@example.com"})
    claim = services.step_claim(run_id=run.pk, step="create_order", task_id="t-1")

    assert claim.outcome is ClaimOutcome.RUN
    assert claim.context.attempt == 1
    assert claim.context.idempotency_key == f"{run.pk}:create_order"
    assert claim.context.payload == {"customer_email": "a@example.com"}
    run.refresh_from_db()
    step = run.steps.get(name="create_order")
    assert (run.status, step.status, step.attempts, step.task_id) == (RunStatus.EXECUTING, "running", 1, "t-1")
    assert list(SagaEvent.objects.filter(run=run).values_list("type", flat=True)) == [
        EventType.SAGA_EXECUTING,
        EventType.STEP_STARTED,
    ]


def test_a_step_that_arrives_before_the_steps_it_follows_is_dropped() -> None:
    run = SagaRunFactory(status=RunStatus.PENDING)
    claim = services.step_claim(run_id=run.pk, step="charge_payment", task_id="t")
    assert claim.outcome is ClaimOutcome.STOP
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
    [(RunStatus.EXECUTING, ClaimOutcome.DONE), (RunStatus.COMPLETED, ClaimOutcome.STOP)],
)
def test_a_succeeded_step_is_never_run_again(status: str, outcome: ClaimOutcome) -> None:
    run = SagaRunFactory(status=status, step_statuses=DONE_TWO)
    assert services.step_claim(run_id=run.pk, step="reserve_stock", task_id="t").outcome is outcome
    assert run.steps.get(name="reserve_stock").attempts == 0
    assert not SagaEvent.objects.exists()


def test_attempts_that_never_reported_back_end_in_a_failure_not_a_loop() -> None:
    run = SagaRunFactory(status=RunStatus.EXECUTING, step_statuses={"create_order": StepStatus.RUNNING})
    run.steps.filter(name="create_order").update(attempts=3)  # the default budget, all lost
    claim = services.step_claim(run_id=run.pk, step="create_order", task_id="t")
    assert claim.outcome is ClaimOutcome.GAVE_UP
    step = run.steps.get(name="create_order")
    assert (step.status, step.attempts, step.error["code"]) == (StepStatus.FAILED, 3, "attempts_lost")


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


def test_errback_for_a_running_step_out_of_attempts_fails_it_and_compensates(
    django_capture_on_commit_callbacks,
) -> None:
    run = SagaRunFactory(status=RunStatus.EXECUTING, step_statuses={"create_order": StepStatus.RUNNING})
    run.steps.filter(name="create_order").update(attempts=3)
    with django_capture_on_commit_callbacks():
        services.run_on_step_failure(run_id=run.pk, step="create_order")
    run.refresh_from_db()
    assert run.status == RunStatus.COMPENSATED  # nothing had completed, so nothing to undo
    assert run.error["step"] == "create_order"


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
    assert claim.outcome is ClaimOutcome.STOP
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
