"""POST /api/runs/{id}/retry|cancel|resolve/: done as the user, refused with 400, 404 or 409 as the run requires."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from sagas.models import SagaEvent, SagaRun
from sagas.states import EventType, RunStatus, StepStatus
from tests.factories import COMPENSATION_FAILED, SagaRunFactory, forward_failed_run, waiting_run
from tests.metrics import publishes

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(api_as: Any) -> APIClient:
    return api_as("view", "retry", "cancel", "resolve", username="ann")


def post(client: APIClient, run: SagaRun | str, action: str, **body: Any) -> Any:
    run_id = run.pk if isinstance(run, SagaRun) else run
    return client.post(f"/api/runs/{run_id}/{action}/", body, format="json")


def events(run: SagaRun) -> list[tuple[str, str, str, dict[str, Any]]]:
    return [(e.type, e.step, e.actor, e.data) for e in SagaEvent.objects.filter(run=run).order_by("seq")]


# --- retry ---


def test_retry_of_a_failed_run_compensates_again_as_the_user(
    operator: APIClient, django_capture_on_commit_callbacks: Any
) -> None:
    run = SagaRunFactory(status=RunStatus.FAILED, step_statuses=COMPENSATION_FAILED)

    with django_capture_on_commit_callbacks() as callbacks:
        response = post(operator, run, "retry", reason="the payment gateway is back")

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == RunStatus.COMPENSATING
    assert body["events"][0]["type"] == EventType.SAGA_RETRIED
    assert body["events"][0]["actor"] == "ann"
    assert events(run)[0] == (
        EventType.SAGA_RETRIED,
        "",
        "ann",
        {"from": "failed", "to": "compensating", "reason": "the payment gateway is back", "steps": ["charge_payment"]},
    )
    assert publishes(callbacks)  # the refund's compensation, on commit


def test_retry_of_a_stuck_run_re_drives_it(operator: APIClient) -> None:
    run = SagaRunFactory(status=RunStatus.EXECUTING, updated_at=timezone.now() - timedelta(hours=1))

    response = post(operator, run, "retry", reason="the worker was down")

    assert response.status_code == 200, response.json()
    ((kind, _, actor, data),) = events(run)
    assert (kind, actor, data["reason"]) == (EventType.SAGA_REDRIVEN, "ann", "the worker was down")


@pytest.mark.parametrize(
    ("status", "detail"),
    [
        (RunStatus.COMPLETED, "is completed; a finished run cannot be retried."),
        (RunStatus.EXECUTING, "is executing and made progress 0s ago; it is not stuck"),
    ],
)
def test_retry_that_the_runs_state_does_not_allow_is_a_409_that_says_why(
    operator: APIClient, status: str, detail: str
) -> None:
    run = SagaRunFactory(status=status)

    response = post(operator, run, "retry", reason="try again")

    assert response.status_code == 409
    assert detail in response.json()["detail"]
    assert not SagaEvent.objects.exists()


def test_retry_of_a_run_whose_saga_version_is_not_deployed_is_a_409(operator: APIClient) -> None:
    run = SagaRunFactory(status=RunStatus.FAILED, version=99, step_statuses=COMPENSATION_FAILED)

    response = post(operator, run, "retry", reason="try again")

    assert response.status_code == 409
    assert "has no version 99 in this process" in response.json()["detail"]


# --- cancel ---


def test_cancel_of_a_pending_run_ends_it_cancelled_with_its_steps_skipped(operator: APIClient) -> None:
    run = SagaRunFactory(status=RunStatus.PENDING)

    response = post(operator, run, "cancel", reason="the customer called")

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == RunStatus.CANCELLED
    assert {step["status"] for step in body["steps"]} == {StepStatus.SKIPPED}
    assert events(run)[0] == (
        EventType.SAGA_CANCELLED,
        "",
        "ann",
        {"from": "pending", "to": "cancelled", "reason": "the customer called"},
    )


def test_cancel_of_an_executing_run_compensates_what_completed(operator: APIClient) -> None:
    run = SagaRunFactory(status=RunStatus.EXECUTING, step_statuses={"create_order": StepStatus.SUCCEEDED})

    response = post(operator, run, "cancel", reason="fraud suspected")

    assert response.status_code == 200, response.json()
    assert response.json()["status"] == RunStatus.COMPENSATING
    assert response.json()["error"]["message"] == "fraud suspected"


@pytest.mark.parametrize(
    ("status", "detail"),
    [
        (RunStatus.COMPLETED, "is completed; a finished run cannot be cancelled."),
        (RunStatus.FAILED, "Retry it (sagas.retry) or resolve the compensation by hand"),
        (RunStatus.COMPENSATING, "is already compensating"),
    ],
)
def test_cancel_that_the_runs_state_does_not_allow_is_a_409(operator: APIClient, status: str, detail: str) -> None:
    run = SagaRunFactory(status=status)

    response = post(operator, run, "cancel", reason="stop")

    assert response.status_code == 409
    assert detail in response.json()["detail"]
    assert SagaRun.objects.get().status == status


# --- resolve ---


def test_resolve_of_the_last_failed_compensation_ends_the_run_compensated(operator: APIClient) -> None:
    run = SagaRunFactory(status=RunStatus.FAILED, step_statuses=COMPENSATION_FAILED)

    response = post(operator, run, "resolve", step="charge_payment", reason="refunded by hand in the PSP console")

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == RunStatus.COMPENSATED
    assert body["steps"][2]["status"] == StepStatus.RESOLVED
    assert events(run)[0] == (
        EventType.COMPENSATION_RESOLVED,
        "charge_payment",
        "ann",
        {"from": "compensation_failed", "to": "resolved", "reason": "refunded by hand in the PSP console"},
    )


def test_resolve_of_a_step_the_run_does_not_have_is_a_400_that_lists_its_steps(operator: APIClient) -> None:
    run = SagaRunFactory(status=RunStatus.FAILED, step_statuses=COMPENSATION_FAILED)

    response = post(operator, run, "resolve", step="refund", reason="done")

    assert response.status_code == 400
    assert response.json() == {
        "step": [
            f"Saga run {run.pk} has no step 'refund' (its steps: create_order, reserve_stock, charge_payment, "
            "schedule_shipment, send_confirmation)."
        ]
    }
    assert not SagaEvent.objects.exists()


@pytest.mark.parametrize(
    ("status", "step", "detail"),
    [
        (
            RunStatus.FAILED,
            "reserve_stock",
            "is compensated; only a step whose compensation failed, or a step that failed after the pivot, can be",
        ),
        (RunStatus.COMPENSATING, "charge_payment", "compensations can only be resolved by hand on a failed run"),
    ],
)
def test_resolve_that_the_run_or_step_does_not_allow_is_a_409(
    operator: APIClient, status: str, step: str, detail: str
) -> None:
    run = SagaRunFactory(status=status, step_statuses=COMPENSATION_FAILED)

    response = post(operator, run, "resolve", step=step, reason="done")

    assert response.status_code == 409
    assert detail in response.json()["detail"]
    assert not SagaEvent.objects.exists()


# --- what every action refuses alike ---


@pytest.mark.parametrize("action", ["retry", "cancel", "resolve"])
@pytest.mark.parametrize(
    ("run_id", "detail"),
    [
        ("00000000-0000-4000-8000-000000000000", "No saga run with id '00000000-0000-4000-8000-000000000000'."),
        ("run-7", "No saga run with id 'run-7': a run id is a UUID."),
    ],
)
def test_an_action_on_an_unknown_or_malformed_run_id_is_a_404(
    operator: APIClient, action: str, run_id: str, detail: str
) -> None:
    response = post(operator, run_id, action, step="charge_payment", reason="x")

    assert response.status_code == 404
    assert response.json() == {"detail": detail}


BLANK = "This field may not be blank."
TOO_LONG = "Ensure this field has no more than 1000 characters."


@pytest.mark.parametrize(
    ("action", "body", "errors"),
    [
        ("retry", {}, {"reason": ["This field is required."]}),
        ("retry", {"reason": "   "}, {"reason": [BLANK]}),
        ("cancel", {"reason": ""}, {"reason": [BLANK]}),
        ("cancel", {"reason": None}, {"reason": ["This field may not be null."]}),
        ("cancel", {"reason": 42}, {"reason": ["Not a valid string."]}),
        ("cancel", {"reason": "x" * 1001}, {"reason": [TOO_LONG]}),
        ("resolve", {"reason": "done"}, {"step": ["This field is required."]}),
        ("resolve", {"step": "charge_payment"}, {"reason": ["This field is required."]}),
        ("resolve", {"step": "", "reason": "\t\n"}, {"step": [BLANK], "reason": [BLANK]}),
        # The limit counts what was sent, trailing blanks included, as the schema says.
        ("retry", {"reason": "x" + " " * 1000}, {"reason": [TOO_LONG]}),
    ],
)
def test_a_missing_or_blank_reason_or_step_is_a_400_and_records_nothing(
    operator: APIClient, action: str, body: dict[str, Any], errors: dict[str, list[str]]
) -> None:
    run = SagaRunFactory(status=RunStatus.FAILED, step_statuses=COMPENSATION_FAILED)

    response = operator.post(f"/api/runs/{run.pk}/{action}/", body, format="json")

    assert response.status_code == 400
    assert response.json() == errors
    assert not SagaEvent.objects.exists()


@pytest.mark.parametrize("action", ["retry", "cancel", "resolve"])
def test_each_action_needs_its_own_permission(api_as: Any, action: str) -> None:
    run = SagaRunFactory(status=RunStatus.FAILED, step_statuses=COMPENSATION_FAILED)
    others = {"retry", "cancel", "resolve"} - {action}
    client = api_as("view", "add", *others, username="helper")

    response = post(client, run, action, step="charge_payment", reason="x")

    assert response.status_code == 403
    assert f"'helper' lacks the permission 'sagas.{action}_sagarun'" in response.json()["detail"]
    assert not SagaEvent.objects.exists()


def test_the_action_answers_the_run_as_reading_it_does(operator: APIClient) -> None:
    run = SagaRunFactory(status=RunStatus.PENDING)

    acted = post(operator, run, "cancel", reason="duplicate order").json()

    assert acted == operator.get(f"/api/runs/{run.pk}/").json()


def test_an_action_answers_a_user_who_may_not_read_runs_only_the_runs_id_and_status(api_as: Any) -> None:
    client = api_as("cancel", username="clerk")
    run = SagaRunFactory(status=RunStatus.PENDING, payload={"customer_email": "ada@example.com", "account_id": 7})

    response = post(client, run, "cancel", reason="duplicate order")

    assert response.status_code == 200, response.json()
    assert response.json() == {"id": str(run.pk), "status": RunStatus.CANCELLED}
    assert b"ada@example.com" not in response.content
    assert client.get(f"/api/runs/{run.pk}/").status_code == 403  # as reading the run is refused
    assert events(run)[0][:3] == (EventType.SAGA_CANCELLED, "", "clerk")


def test_a_signal_answers_a_user_who_may_not_read_runs_only_the_runs_id_and_status(api_as: Any) -> None:
    client = api_as("signal", username="approver")
    run = waiting_run()

    response = post(client, run, "signal", name="approved", data={"approved_by": "ann"})

    assert response.status_code == 200, response.json()
    body = response.json()
    assert set(body) == {"id", "status"}
    assert body == {"id": str(run.pk), "status": RunStatus.EXECUTING}
    assert not {"payload", "steps", "events", "error"} & set(body)
    assert b"approved_by" not in response.content  # the step's output, which it just set
    assert events(run)[0][:3] == (EventType.SIGNAL_RECEIVED, "approved", "approver")


def test_a_signal_answers_a_user_who_may_read_runs_the_whole_run(api_as: Any) -> None:
    client = api_as("view", "signal", username="approver")
    run = waiting_run()

    response = post(client, run, "signal", name="approved", data={"approved_by": "ann"})

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body == client.get(f"/api/runs/{run.pk}/").json()
    assert {"payload", "steps", "events", "events_url"} <= set(body)
    assert body["events"][-1]["type"] == EventType.SIGNAL_RECEIVED


@pytest.mark.parametrize("action", ["retry", "cancel", "resolve"])
def test_an_unknown_run_is_a_404_whatever_the_body(operator: APIClient, action: str) -> None:
    run_id = str(uuid.uuid4())
    response = post(operator, run_id, action, step="nope")

    assert response.status_code == 404
    assert response.json() == {"detail": f"No saga run with id {run_id!r}."}


# --- forward recovery after the pivot ---


def test_resolve_of_a_step_failed_after_the_pivot_records_the_output_and_goes_on(operator: APIClient) -> None:
    run = forward_failed_run()

    response = post(operator, run, "resolve", step="ship", reason="couriered", output={"tracking": "BY-HAND"})

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == RunStatus.EXECUTING
    ship = next(step for step in body["steps"] if step["name"] == "ship")
    assert (ship["status"], ship["output"]) == (StepStatus.SUCCEEDED, {"tracking": "BY-HAND"})
    assert events(run)[0] == (
        EventType.STEP_RESOLVED,
        "ship",
        "ann",
        {"from": "failed", "to": "succeeded", "reason": "couriered", "output": {"tracking": "BY-HAND"}},
    )


def test_retry_of_a_run_failed_after_the_pivot_goes_forward(operator: APIClient) -> None:
    run = forward_failed_run()

    response = post(operator, run, "retry", reason="shipping is back")

    assert response.status_code == 200, response.json()
    assert response.json()["status"] == RunStatus.EXECUTING
    assert [event[0] for event in events(run)] == [EventType.SAGA_RETRIED, EventType.STEP_RETRIED]


def test_an_output_for_a_failed_compensation_is_a_409(operator: APIClient) -> None:
    run = SagaRunFactory(status=RunStatus.FAILED, step_statuses=COMPENSATION_FAILED)

    response = post(operator, run, "resolve", step="charge_payment", reason="done", output={"refund": 1})

    assert response.status_code == 409
    assert "an output is given only for a step that failed after the pivot" in response.json()["detail"]
    assert not SagaEvent.objects.exists()


# --- signal ---


def test_a_signal_completes_the_wait_with_its_data_as_the_user(api_as: Any) -> None:
    client = api_as("view", "signal", username="ann")
    run = waiting_run()

    response = post(client, run, "signal", name="approved", data={"tracking": "OK-1"}, reason="manager said yes")

    assert response.status_code == 200, response.json()
    approved = next(step for step in response.json()["steps"] if step["name"] == "approved")
    assert (approved["status"], approved["output"]) == (StepStatus.SUCCEEDED, {"tracking": "OK-1"})
    assert events(run)[0] == (
        EventType.SIGNAL_RECEIVED,
        "approved",
        "ann",
        {"from": "waiting", "to": "succeeded", "output": {"tracking": "OK-1"}, "reason": "manager said yes"},
    )


def test_a_signal_the_run_does_not_wait_for_is_a_409_and_bad_data_a_400(api_as: Any) -> None:
    client = api_as("view", "signal", username="ann")
    run = waiting_run()

    misdirected = post(client, run, "signal", name="rejected")
    assert misdirected.status_code == 409
    assert "has no Wait step 'rejected'" in misdirected.json()["detail"]
    not_an_object = post(client, run, "signal", name="approved", data=[1, 2])
    assert not_an_object.status_code == 400
    assert "data" in not_an_object.json()
    assert not SagaEvent.objects.exists()


def test_signal_data_that_would_rewrite_the_start_payload_or_is_too_big_is_a_400_on_data(api_as: Any) -> None:
    client = api_as("signal", username="webhook")
    run = waiting_run(payload={"account_id": 1})

    shadowing = post(client, run, "signal", name="approved", data={"account_id": 666})
    assert shadowing.status_code == 400
    assert list(shadowing.json()) == ["data"]
    assert list(shadowing.json()["data"]) == ["account_id"]
    too_big = post(client, run, "signal", name="approved", data={"notes": "x" * 300_000})
    assert too_big.status_code == 400
    assert "over the limit" in too_big.json()["data"][0]
    assert not SagaEvent.objects.exists()
    accepted = post(client, run, "signal", name="approved", data={"tracking": "T-1"})
    assert accepted.json() == {"id": str(run.pk), "status": RunStatus.EXECUTING}  # on to the step after the Wait
    assert run.steps.get(name="approved").output == {"tracking": "T-1"}


def test_a_reason_with_an_unpaired_surrogate_is_a_400_on_reason(operator: APIClient) -> None:
    run = SagaRunFactory(status=RunStatus.FAILED, step_statuses=COMPENSATION_FAILED)
    response = operator.post(
        f"/api/runs/{run.pk}/retry/", '{"reason": "half \\udcff a character"}', content_type="application/json"
    )
    assert response.status_code == 400
    assert list(response.json()) == ["reason"]
    assert not SagaEvent.objects.exists()


def test_a_resolve_output_that_would_rewrite_the_start_payload_is_a_400_on_output(operator: APIClient) -> None:
    run = forward_failed_run(payload={"account_id": 1})
    response = post(operator, run, "resolve", step="ship", reason="by hand", output={"account_id": 2})
    assert response.status_code == 400
    assert list(response.json()["output"]) == ["account_id"]
    assert not SagaEvent.objects.exists()


def test_a_signal_needs_the_signal_permission(api_as: Any) -> None:
    client = api_as("view", "retry", "cancel", "resolve", username="bob")
    run = waiting_run()
    assert post(client, run, "signal", name="approved").status_code == 403
    assert not SagaEvent.objects.exists()
