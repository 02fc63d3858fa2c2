"""Operator services refuse what the run's state does not allow, and record what they do."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

import sagas
from sagas import services
from sagas.models import SagaEvent
from sagas.states import EventType, RunStatus, StepStatus
from tests.factories import COMPENSATION_FAILED, SagaRunFactory, forward_failed_run
from tests.metrics import publishes

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (RunStatus.COMPLETED, "is completed; a finished run cannot be retried"),
        (RunStatus.COMPENSATED, "is compensated; a finished run cannot be retried"),
        (RunStatus.EXECUTING, r"is executing and made progress \d+s ago; it is not stuck"),
    ],
)
def test_retry_of_a_run_that_is_neither_failed_nor_stuck_is_refused_and_records_nothing(
    status: str, message: str
) -> None:
    run = SagaRunFactory(status=status)
    with pytest.raises(sagas.InvalidTransition, match=message):
        sagas.retry(run.pk, reason="try again", actor="bob")
    run.refresh_from_db()
    assert run.status == status
    assert not SagaEvent.objects.exists()


def test_operator_actions_on_a_missing_run_say_so() -> None:
    with pytest.raises(sagas.RunNotFound):
        sagas.retry(uuid.uuid4(), reason="x")
    with pytest.raises(sagas.RunNotFound):
        sagas.cancel("not-a-uuid", reason="x")


def test_a_reason_is_required() -> None:
    run = SagaRunFactory(status=RunStatus.FAILED, step_statuses=COMPENSATION_FAILED)
    with pytest.raises(ValueError, match="reason is required"):
        sagas.resolve(run.pk, step="charge_payment", reason="  ")
    assert not SagaEvent.objects.exists()


@pytest.mark.parametrize("step", ["reserve_stock", "schedule_shipment", "send_confirmation"])
def test_resolve_of_a_step_whose_compensation_did_not_fail_is_refused(step: str) -> None:
    run = SagaRunFactory(status=RunStatus.FAILED, step_statuses=COMPENSATION_FAILED)
    with pytest.raises(sagas.InvalidTransition, match="only a step whose compensation failed"):
        sagas.resolve(run.pk, step=step, reason="done by hand")
    assert run.steps.get(name=step).status == COMPENSATION_FAILED[step]
    assert not SagaEvent.objects.exists()


def test_resolve_of_an_unknown_step_lists_the_steps() -> None:
    run = SagaRunFactory(status=RunStatus.FAILED, step_statuses=COMPENSATION_FAILED)
    with pytest.raises(sagas.InvalidTransition, match=r"has no step 'refund'.*charge_payment"):
        sagas.resolve(run.pk, step="refund", reason="x")


@pytest.mark.parametrize("status", [RunStatus.FAILED, RunStatus.COMPENSATING])
def test_an_unknown_step_is_an_error_of_its_own_whatever_the_runs_state(status: str) -> None:
    run = SagaRunFactory(status=status, step_statuses=COMPENSATION_FAILED)
    with pytest.raises(sagas.UnknownStep) as raised:
        sagas.resolve(run.pk, step="refund", reason="x")
    assert raised.value.step == "refund"
    assert raised.value.steps[0] == "create_order"
    assert "charge_payment" in raised.value.steps
    assert not SagaEvent.objects.exists()


@pytest.mark.parametrize("operate", [sagas.cancel, sagas.retry])
def test_a_blank_reason_is_a_reason_required_error(operate) -> None:
    run = SagaRunFactory(status=RunStatus.FAILED, step_statuses=COMPENSATION_FAILED)
    with pytest.raises(sagas.ReasonRequired):
        operate(run.pk, reason=" ")
    assert not SagaEvent.objects.exists()


def test_resolve_on_a_run_that_is_not_failed_is_refused() -> None:
    run = SagaRunFactory(status=RunStatus.COMPENSATING, step_statuses=COMPENSATION_FAILED)
    with pytest.raises(sagas.InvalidTransition, match="only be resolved by hand on a failed run"):
        sagas.resolve(run.pk, step="charge_payment", reason="x")


def test_resolving_one_of_two_failed_compensations_keeps_the_run_failed() -> None:
    run = SagaRunFactory(
        status=RunStatus.FAILED,
        step_statuses={**COMPENSATION_FAILED, "reserve_stock": StepStatus.COMPENSATION_FAILED},
    )
    sagas.resolve(run.pk, step="charge_payment", reason="refunded by hand", actor="alice")
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    sagas.resolve(run.pk, step="reserve_stock", reason="stock counted by hand", actor="alice")
    run.refresh_from_db()
    assert run.status == RunStatus.COMPENSATED
    assert list(SagaEvent.objects.order_by("seq").values_list("seq", "type", "step", "actor")) == [
        (1, EventType.COMPENSATION_RESOLVED, "charge_payment", "alice"),
        (2, EventType.COMPENSATION_RESOLVED, "reserve_stock", "alice"),
        (3, EventType.SAGA_COMPENSATED, "", "alice"),
    ]


def test_cancel_of_a_pending_run_skips_every_step_and_records_actor_and_reason() -> None:
    run = SagaRunFactory(status=RunStatus.PENDING)
    sagas.cancel(run.pk, reason="customer changed their mind", actor="carol")
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    assert run.finished_at is not None
    assert set(run.steps.values_list("status", flat=True)) == {StepStatus.SKIPPED}
    cancelled = SagaEvent.objects.get(type=EventType.SAGA_CANCELLED)
    assert (cancelled.actor, cancelled.data["reason"]) == ("carol", "customer changed their mind")
    assert SagaEvent.objects.filter(type=EventType.STEP_SKIPPED, causation=cancelled).count() == 5


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (RunStatus.COMPLETED, "a finished run cannot be cancelled"),
        (RunStatus.COMPENSATED, "a finished run cannot be cancelled"),
        (RunStatus.CANCELLED, "a finished run cannot be cancelled"),
        (RunStatus.COMPENSATING, "already compensating"),
        (RunStatus.FAILED, "Retry it \\(sagas.retry\\) or resolve"),
    ],
)
def test_cancel_of_a_run_that_cannot_stop_is_refused(status: str, message: str) -> None:
    run = SagaRunFactory(status=status)
    with pytest.raises(sagas.InvalidTransition, match=message):
        sagas.cancel(run.pk, reason="stop")
    run.refresh_from_db()
    assert run.status == status
    assert not SagaEvent.objects.exists()


def test_cancel_of_an_executing_run_stops_it_and_undoes_in_order(django_capture_on_commit_callbacks) -> None:
    run = SagaRunFactory(
        status=RunStatus.EXECUTING,
        step_statuses={"create_order": StepStatus.SUCCEEDED, "reserve_stock": StepStatus.RUNNING},
    )
    with django_capture_on_commit_callbacks() as callbacks:
        sagas.cancel(run.pk, reason="fraud suspected", actor="erin")

    run.refresh_from_db()
    assert run.status == RunStatus.COMPENSATING
    assert run.error == {"class": "cancelled", "code": "cancelled", "message": "fraud suspected", "actor": "erin"}
    statuses = dict(run.steps.values_list("name", "status"))
    assert statuses == {
        "create_order": StepStatus.SUCCEEDED,  # waits: the step still running depends on it
        "reserve_stock": StepStatus.RUNNING,  # left to finish; undone if it succeeds
        "charge_payment": StepStatus.SKIPPED,
        "schedule_shipment": StepStatus.SKIPPED,
        "send_confirmation": StepStatus.SKIPPED,
    }
    cancelled = SagaEvent.objects.get(type=EventType.SAGA_CANCELLED)
    assert (cancelled.actor, cancelled.data) == (
        "erin",
        {"from": "executing", "to": "compensating", "reason": "fraud suspected", "set": {"error": run.error}},
    )
    assert publishes(callbacks) == []

    # The running step succeeds late: it is recorded, and undone first; the run does not come back.
    with django_capture_on_commit_callbacks() as callbacks:
        assert services.step_succeed(run_id=run.pk, step="reserve_stock", output={"reservation_id": 1}) is False
    statuses = dict(run.steps.values_list("name", "status"))
    assert (statuses["reserve_stock"], statuses["create_order"]) == (StepStatus.COMPENSATING, StepStatus.SUCCEEDED)
    assert len(publishes(callbacks)) == 1


# --- forward recovery after the pivot ---


def task_ids(callbacks: list[Any]) -> list[str]:
    """The task ids the on-commit publishes would send, chains unrolled."""
    canvases = [callback.canvas for callback in publishes(callbacks)]
    return [task.options["task_id"] for canvas in canvases for task in getattr(canvas, "tasks", [canvas])]


def test_retry_of_a_run_failed_after_its_pivot_runs_the_failed_step_again_with_a_fresh_budget(
    django_capture_on_commit_callbacks: Any,
) -> None:
    run = forward_failed_run()
    with django_capture_on_commit_callbacks() as callbacks:
        retried = sagas.retry(run.pk, reason="shipping is back", actor="ops")
    assert retried.status == RunStatus.EXECUTING
    assert retried.finished_at is None
    ship = run.steps.get(name="ship")
    assert (ship.status, ship.attempts) == (StepStatus.RUNNING, 2)
    assert [e.type for e in SagaEvent.objects.filter(run=run).order_by("seq")] == [
        EventType.SAGA_RETRIED,
        EventType.STEP_RETRIED,
    ]
    assert task_ids(callbacks) == [f"{run.pk}:ship:3", f"{run.pk}:notify:1"]


def test_resolve_of_a_step_failed_after_the_pivot_needs_a_json_output() -> None:
    run = forward_failed_run()
    with pytest.raises(sagas.InvalidPayload, match="not JSON-serialisable"):
        sagas.resolve(run.pk, step="ship", reason="by hand", actor="ops", output={"when": object()})
    assert run.steps.get(name="ship").status == StepStatus.FAILED
    assert not SagaEvent.objects.exists()


@pytest.mark.parametrize("text", ["lost\x00byte", "half \udcff a character"])
def test_a_reason_or_actor_the_database_cannot_store_is_refused_before_anything_changes(text: str) -> None:
    run = SagaRunFactory(status=RunStatus.FAILED, step_statuses=COMPENSATION_FAILED)
    with pytest.raises(sagas.InvalidPayload, match="Text in the reason") as caught:
        sagas.retry(run.pk, reason=text, actor="ops")
    assert caught.value.field == "reason"
    with pytest.raises(sagas.InvalidPayload, match="Text in the actor") as caught:
        sagas.cancel(run.pk, reason="by hand", actor=text)
    assert caught.value.field == "actor"
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert not SagaEvent.objects.filter(run=run).exists()


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ({"tracking": "T-9", "account_id": 666}, "may not set 'account_id'"),
        ({"tracking": "x" * 300_000}, "over the limit of"),
    ],
)
def test_a_resolve_output_may_add_to_a_run_never_rewrite_its_start_or_exceed_the_size_limit(
    output: dict[str, Any], message: str
) -> None:
    run = forward_failed_run(payload={"account_id": 1, "amount": "10.00"})
    with pytest.raises(sagas.InvalidPayload, match=message) as caught:
        sagas.resolve(run.pk, step="ship", reason="by hand", actor="ops", output=output)
    assert caught.value.field == "output"
    assert run.steps.get(name="ship").status == StepStatus.FAILED
    assert not SagaEvent.objects.exists()


def test_resolve_of_a_step_failed_after_the_pivot_publishes_the_next_step(
    django_capture_on_commit_callbacks: Any,
) -> None:
    run = forward_failed_run()
    with django_capture_on_commit_callbacks() as callbacks:
        resolved = sagas.resolve(run.pk, step="ship", reason="couriered", actor="ops", output={"tracking": "X"})
    assert resolved.status == RunStatus.EXECUTING
    ship = run.steps.get(name="ship")
    assert (ship.status, ship.output) == (StepStatus.SUCCEEDED, {"tracking": "X"})
    assert [e.type for e in SagaEvent.objects.filter(run=run).order_by("seq")] == [
        EventType.STEP_RESOLVED,
        EventType.SAGA_RESUMED,
    ]
    assert task_ids(callbacks) == [f"{run.pk}:notify:1"]


def test_an_output_is_refused_for_a_failed_compensation() -> None:
    run = SagaRunFactory(status=RunStatus.FAILED, step_statuses=COMPENSATION_FAILED)
    with pytest.raises(sagas.InvalidTransition, match="an output is given only for a step that failed after"):
        sagas.resolve(run.pk, step="charge_payment", reason="by hand", output={"refund": "R-1"})
    assert not SagaEvent.objects.exists()


def test_a_run_past_its_pivot_cannot_be_cancelled() -> None:
    run = forward_failed_run(status=RunStatus.EXECUTING)
    run.steps.filter(name="ship").update(status=StepStatus.RUNNING)
    with pytest.raises(sagas.InvalidTransition, match="past its pivot"):
        sagas.cancel(run.pk, reason="customer called", actor="ops")
    assert not SagaEvent.objects.exists()
