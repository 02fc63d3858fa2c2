"""GET /api/runs/ and /api/runs/{id}/: a run with its steps and events, the filtered list, and masked secrets."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from participants.checkout.sagas import PlaceOrder
from sagas.masking import MASK
from sagas.models import SagaEvent, SagaRun
from sagas.states import EventType, RunStatus, StepStatus
from tests.factories import COMPENSATION_FAILED, SagaRunFactory, waiting_run

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(api_as: Any) -> APIClient:
    return api_as("view")


def at(minutes: int) -> datetime:
    return datetime(2026, 3, 1, 12, 0, tzinfo=timezone.get_current_timezone()) + timedelta(minutes=minutes)


# --- one run ---


def test_a_run_comes_with_its_steps_in_order_and_its_events_with_their_causes(api: APIClient) -> None:
    run = SagaRunFactory(status=RunStatus.FAILED, step_statuses=COMPENSATION_FAILED, error={"class": "business"})
    run.steps.filter(name="charge_payment").update(attempts=1, compensation_attempts=3, error={"message": "down"})
    failed = SagaEvent.objects.create(run=run, seq=1, type=EventType.STEP_FAILED, step="schedule_shipment")
    SagaEvent.objects.create(run=run, seq=2, type=EventType.SAGA_COMPENSATING, causation=failed, actor="")

    response = api.get(f"/api/runs/{run.pk}/")

    assert response.status_code == 200
    body = response.json()
    assert (body["id"], body["status"], body["error"]) == (str(run.pk), RunStatus.FAILED, {"class": "business"})
    assert [(s["index"], s["name"], s["status"]) for s in body["steps"]] == [
        (index, step.name, COMPENSATION_FAILED[step.name]) for index, step in enumerate(PlaceOrder.steps)
    ]
    charge = body["steps"][2]
    assert (charge["attempts"], charge["compensation_attempts"], charge["error"]) == (1, 3, {"message": "down"})
    assert set(charge) == {
        "name", "index", "status", "attempts", "compensation_attempts", "output", "error",
        "started_at", "finished_at", "compensated_at", "wait_until", "worker", "worker_pid",
    }  # fmt: skip
    assert [(e["seq"], e["type"], e["step"], e["causation_seq"]) for e in body["events"]] == [
        (1, EventType.STEP_FAILED, "schedule_shipment", None),
        (2, EventType.SAGA_COMPENSATING, "", 1),
    ]


def test_secrets_in_the_payload_outputs_errors_and_event_data_are_masked(api: APIClient) -> None:
    run = SagaRunFactory(
        payload={"order_id": 7, "card_number": "4111 1111 1111 1111", "billing": {"API_KEY": "sk_live_1"}},
        error={"message": "declined", "card": "4111"},
        step_statuses={"charge_payment": StepStatus.SUCCEEDED},
    )
    run.steps.filter(name="charge_payment").update(output={"payment_id": 9, "card_token": "tok_1"})
    SagaEvent.objects.create(
        run=run, seq=1, type=EventType.STEP_SUCCEEDED, data={"output": {"payment_id": 9, "card_token": "tok_1"}}
    )

    body = api.get(f"/api/runs/{run.pk}/").json()

    assert body["payload"] == {"order_id": 7, "card_number": MASK, "billing": {"API_KEY": MASK}}
    assert body["error"] == {"message": "declined", "card": MASK}
    assert body["steps"][2]["output"] == {"payment_id": 9, "card_token": MASK}
    assert body["events"][0]["data"] == {"output": {"payment_id": 9, "card_token": MASK}}
    listed = api.get("/api/runs/").json()["results"][0]
    assert "payload" not in listed  # list rows leave payloads out: read the run for it
    assert listed["error"] == body["error"]
    # Only what is shown is masked: the stored run keeps its payload.
    assert SagaRun.objects.get().payload["card_number"] == "4111 1111 1111 1111"


def test_masking_follows_the_masked_keys_setting(api: APIClient, settings: Any) -> None:
    settings.SAGAS = {**settings.SAGAS, "MASKED_KEYS": ["email"]}
    run = SagaRunFactory(payload={"customer_email": "ada@example.com", "card": "4111"})

    assert api.get(f"/api/runs/{run.pk}/").json()["payload"] == {"customer_email": MASK, "card": "4111"}


UNKNOWN = uuid.UUID("6ea126e4-c0ff-4a47-9dfd-4c1dd0fbdaf5")  # fixed: test ids must be the same in every xdist worker


@pytest.mark.parametrize(
    ("run_id", "detail"),
    [
        (str(UNKNOWN), f"No saga run with id '{UNKNOWN}'."),
        ("not-a-uuid", "No saga run with id 'not-a-uuid': a run id is a UUID."),
        ("12345", "No saga run with id '12345': a run id is a UUID."),
    ],
)
def test_an_unknown_or_malformed_run_id_is_a_404(api: APIClient, run_id: str, detail: str) -> None:
    SagaRunFactory()
    response = api.get(f"/api/runs/{run_id}/")

    assert response.status_code == 404
    assert response.json() == {"detail": detail}


def test_reading_a_run_takes_the_same_queries_however_long_its_history(api: APIClient) -> None:
    short, long = SagaRunFactory(), SagaRunFactory()
    SagaEvent.objects.bulk_create(SagaEvent(run=long, seq=seq, type=EventType.STEP_STARTED) for seq in range(1, 41))

    def queries(run: SagaRun) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert api.get(f"/api/runs/{run.pk}/").status_code == 200
        return len(captured)

    assert queries(short) == queries(long)


# --- the list ---


def test_the_list_is_newest_first_without_steps_or_events(api: APIClient) -> None:
    runs = [SagaRunFactory(created_at=at(minutes)) for minutes in (0, 10, 5)]

    response = api.get("/api/runs/")

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 3
    assert [item["id"] for item in body["results"]] == [str(runs[1].pk), str(runs[2].pk), str(runs[0].pk)]
    assert not {"steps", "events"} & set(body["results"][0])


def test_the_list_comes_in_pages(api: APIClient) -> None:
    runs = [SagaRunFactory(created_at=at(minutes)) for minutes in range(5)]

    first = api.get("/api/runs/", {"page_size": 2}).json()
    last = api.get("/api/runs/", {"page_size": 2, "page": 3}).json()

    assert first["count"] == 5
    assert [item["id"] for item in first["results"]] == [str(runs[4].pk), str(runs[3].pk)]
    assert first["next"].endswith("/api/runs/?page=2&page_size=2")
    assert first["previous"] is None
    assert [item["id"] for item in last["results"]] == [str(runs[0].pk)]
    assert last["next"] is None


@pytest.mark.parametrize("page_size", ["0", "501", "-1", "ten", "1e3", "99999999999999999999"])
def test_a_page_size_that_is_not_one_is_a_400(api: APIClient, page_size: str) -> None:
    response = api.get("/api/runs/", {"page_size": page_size})

    assert response.status_code == 400
    assert response.json() == {"page_size": ["Ask for a whole number of runs from 1 to 500."]}


@pytest.mark.parametrize("page", ["4", "0", "last-one"])
def test_a_page_that_does_not_exist_is_a_404(api: APIClient, page: str) -> None:
    SagaRunFactory()
    response = api.get("/api/runs/", {"page": page})

    assert response.status_code == 404
    assert response.json() == {"detail": "Invalid page."}


def test_the_list_filters_by_status_saga_key_correlation_and_creation_time(api: APIClient) -> None:
    failed = SagaRunFactory(status=RunStatus.FAILED, created_at=at(0), correlation_id="req-1")
    trip = SagaRunFactory(saga_name="travel.book_trip", created_at=at(10), idempotency_key="trip-7")
    done = SagaRunFactory(status=RunStatus.COMPLETED, created_at=at(20), correlation_id="req-1")

    def listed(**filters: str) -> list[str]:
        response = api.get("/api/runs/", filters)
        assert response.status_code == 200, response.json()
        return [item["id"] for item in response.json()["results"]]

    assert listed(status="failed") == [str(failed.pk)]
    assert listed(saga="travel.book_trip") == [str(trip.pk)]
    assert listed(saga=PlaceOrder.name) == [str(done.pk), str(failed.pk)]
    assert listed(idempotency_key="trip-7") == [str(trip.pk)]
    assert listed(correlation_id="req-1") == [str(done.pk), str(failed.pk)]
    assert listed(created_after=at(10).isoformat()) == [str(done.pk), str(trip.pk)]
    assert listed(created_before=at(10).isoformat()) == [str(failed.pk)]
    assert listed(created_after="2026-03-01T12:05:00+00:00", created_before="2026-03-01T12:15:00+00:00") == [
        str(trip.pk)
    ]
    assert listed(correlation_id="req-1", status="completed") == [str(done.pk)]
    # An empty filter, as a form sends it, filters nothing.
    assert listed(status="", saga="", created_after="") == [str(done.pk), str(trip.pk), str(failed.pk)]


WRONG_FORMAT = (
    "Datetime has wrong format. Use one of these formats instead: YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z]."
)


@pytest.mark.parametrize(
    ("filters", "errors"),
    [
        (
            {"status": "stuck"},
            {
                "status": [
                    '"stuck" is not a run status; use one of: pending, executing, completed, compensating, '
                    "compensated, timeout, failed, cancelled."
                ]
            },
        ),
        ({"created_after": "yesterday"}, {"created_after": [WRONG_FORMAT]}),
        ({"created_before": "2026-13-01T00:00"}, {"created_before": [WRONG_FORMAT]}),
        ({"created_before": "0001-01-01T00:00:00+01:00"}, {"created_before": ["Datetime value out of range."]}),
        ({"saga": "x" * 201}, {"saga": ["Ensure this field has no more than 200 characters."]}),
        ({"correlation_id": "req\x00"}, {"correlation_id": ["Null characters are not allowed."]}),
    ],
)
def test_a_bad_filter_is_a_400_that_names_it(api: APIClient, filters: dict[str, str], errors: dict[str, Any]) -> None:
    response = api.get("/api/runs/", filters)

    assert response.status_code == 400
    assert response.json() == errors


def test_listing_takes_the_same_queries_whatever_the_page_size(api: APIClient) -> None:
    for minutes in range(30):
        SagaRunFactory(created_at=at(minutes), payload={"order_id": minutes})

    def queries(page_size: int) -> int:
        with CaptureQueriesContext(connection) as captured:
            response = api.get("/api/runs/", {"page_size": page_size})
        assert len(response.json()["results"]) == page_size
        return len(captured)

    small = queries(2)
    assert queries(30) == small
    assert small <= 5  # the token, the user's permissions (2), the count, the page


def test_reading_needs_the_view_permission(api_as: Any) -> None:
    run = SagaRunFactory()
    client = api_as("add", "retry", "cancel", "resolve", username="starter")

    for url in ("/api/runs/", f"/api/runs/{run.pk}/"):
        response = client.get(url)
        assert response.status_code == 403
        assert "'starter' lacks the permission 'sagas.view_sagarun'" in response.json()["detail"]


def test_a_child_run_names_its_parent_and_a_waiting_step_its_timeout(api: APIClient) -> None:
    parent = waiting_run()
    until = timezone.now() + timedelta(hours=1)
    parent.steps.filter(name="approved").update(wait_until=until)
    child = SagaRunFactory(status=RunStatus.EXECUTING, parent=parent, parent_step="approved")

    body = api.get(f"/api/runs/{child.pk}/").json()
    assert (body["parent"], body["parent_step"]) == (str(parent.pk), "approved")
    steps = {step["name"]: step for step in api.get(f"/api/runs/{parent.pk}/").json()["steps"]}
    assert steps["approved"]["status"] == StepStatus.WAITING
    assert datetime.fromisoformat(steps["approved"]["wait_until"].replace("Z", "+00:00")) == until
    assert api.get(f"/api/runs/{parent.pk}/").json()["parent"] is None
