"""POST /api/sagas/{name}/runs/: a new run (201), the same run again (200), and every refusal."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from participants.checkout.sagas import PlaceOrder
from sagas.definitions import start_time
from sagas.models import SagaEvent, SagaRun
from sagas.states import EventType, RunStatus, StepStatus
from tests.factories import order_payload
from tests.metrics import publishes
from tests.testapp.sagas import Deadline, StubbornStep

pytestmark = pytest.mark.django_db

URL = f"/api/sagas/{PlaceOrder.name}/runs/"


@pytest.fixture
def api(api_as: Any) -> APIClient:
    return api_as("add", username="shopfront")


def test_start_stores_a_pending_run_and_answers_201_with_it_and_its_location(
    api: APIClient, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks() as callbacks:
        response = api.post(
            URL, {"payload": order_payload(), "idempotency_key": "order-1", "correlation_id": "req-7"}, format="json"
        )

    assert response.status_code == 201, response.json()
    body = response.json()
    run = SagaRun.objects.get()
    assert response["Location"] == f"http://testserver/api/runs/{run.pk}/"
    assert (body["id"], body["saga_name"], body["version"], body["status"]) == (
        str(run.pk),
        PlaceOrder.name,
        PlaceOrder.version,
        RunStatus.PENDING,
    )
    assert (body["payload"], body["idempotency_key"], body["correlation_id"]) == (order_payload(), "order-1", "req-7")
    assert [(s["name"], s["status"], s["attempts"]) for s in body["steps"]] == [
        (step.name, StepStatus.PENDING, 0) for step in PlaceOrder.steps
    ]
    assert [(e["seq"], e["type"], e["causation_seq"]) for e in body["events"]] == [(1, EventType.SAGA_STARTED, None)]
    # The steps are published when the request's transaction commits, as Saga.start does.
    assert publishes(callbacks)


def test_the_same_idempotency_key_and_payload_answers_200_with_the_same_run_and_starts_nothing(
    api: APIClient, django_capture_on_commit_callbacks: Any
) -> None:
    first = api.post(URL, {"payload": order_payload(), "idempotency_key": "order-2"}, format="json")
    with django_capture_on_commit_callbacks() as callbacks:
        again = api.post(URL, {"payload": order_payload(), "idempotency_key": "order-2"}, format="json")

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert again["Location"] == first["Location"]
    assert SagaRun.objects.count() == 1
    assert not publishes(callbacks)


def test_the_same_idempotency_key_with_another_payload_is_a_409_that_says_so(api: APIClient) -> None:
    api.post(URL, {"payload": order_payload(), "idempotency_key": "order-3"}, format="json")
    response = api.post(
        URL, {"payload": order_payload(customer_email="bob@example.com"), "idempotency_key": "order-3"}, format="json"
    )

    assert response.status_code == 409
    assert "already started run" in response.json()["detail"]
    assert "Use a new key" in response.json()["detail"]
    assert SagaRun.objects.count() == 1


def test_an_idempotency_key_used_by_another_saga_is_a_409(api: APIClient) -> None:
    api.post(URL, {"payload": {}, "idempotency_key": "shared"}, format="json")
    body = {"payload": {}, "idempotency_key": "shared"}
    response = api.post("/api/sagas/travel.book_trip/runs/", body, format="json")

    assert response.status_code == 409
    assert "'orders.place_order' run" in response.json()["detail"]


def test_a_correlation_id_defaults_to_the_run_id(api: APIClient) -> None:
    body = api.post(URL, {"payload": {}}, format="json").json()
    assert body["correlation_id"] == body["id"]
    assert body["idempotency_key"] is None


def test_an_unknown_saga_name_is_a_404_that_lists_the_known_ones(api: APIClient) -> None:
    response = api.post("/api/sagas/orders.place_ordr/runs/", {"payload": {}}, format="json")

    assert response.status_code == 404
    assert "No saga named 'orders.place_ordr'" in response.json()["detail"]
    assert PlaceOrder.name in response.json()["detail"]
    assert not SagaRun.objects.exists()


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({}, {"payload": ["This field is required."]}),
        ({"payload": [1, 2]}, {"payload": ['The payload must be a JSON object, not a "list".']}),
        ({"payload": "order 7"}, {"payload": ['The payload must be a JSON object, not a "str".']}),
        ({"payload": None}, {"payload": ["This field may not be null."]}),
        ({"payload": {}, "idempotency_key": ""}, {"idempotency_key": ["This field may not be blank."]}),
        (
            {"payload": {}, "idempotency_key": "k" * 256},
            {"idempotency_key": ["Ensure this field has no more than 255 characters."]},
        ),
        ({"payload": {}, "idempotency_key": None}, {"idempotency_key": ["This field may not be null."]}),
        ({"payload": {}, "idempotency_key": 1042}, {"idempotency_key": ["Not a valid string."]}),
        ({"payload": {}, "correlation_id": ["a"]}, {"correlation_id": ["Not a valid string."]}),
        ({"payload": {}, "correlation_id": "req\x00"}, {"correlation_id": ["Null characters are not allowed."]}),
        (
            {"payload": {"note": "a\x00b"}},
            {"payload": ["Text in the payload may not contain NUL characters (\\u0000)."]},
        ),
        (
            {"payload": {"lines": [{"sku\x00": 1}]}},
            {"payload": ["Text in the payload may not contain NUL characters (\\u0000)."]},
        ),
    ],
)
def test_bad_input_is_a_400_with_field_errors_and_stores_nothing(
    api: APIClient, body: dict[str, Any], errors: dict[str, list[str]]
) -> None:
    response = api.post(URL, body, format="json")

    assert response.status_code == 400
    assert response.json() == errors
    assert not SagaRun.objects.exists()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ('{"payload": {"amount": 1e400}}', "is not JSON-serialisable"),  # parses as infinity
        ('{"payload": {"note": "\\ud800"}}', "unpaired surrogate"),
        # Parsed, but too deep to show: masking the payload for the answer (and the admin) would recurse.
        ('{"payload": {"a": ' + "[" * 101 + "]" * 101 + "}}", "nested deeper than 100 levels"),
    ],
)
def test_a_payload_that_should_not_be_stored_is_a_400(api: APIClient, raw: str, message: str) -> None:
    response = api.post(URL, raw, content_type="application/json")

    assert response.status_code == 400
    assert message in response.json()["payload"][0]
    assert not SagaRun.objects.exists()


def test_a_payload_nested_100_levels_deep_is_stored_and_shown(api: APIClient) -> None:
    raw = '{"payload": {"a": ' + "[" * 100 + "]" * 100 + "}}"
    assert api.post(URL, raw, content_type="application/json").status_code == 201


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        ('{"payload": ', "JSON parse error"),
        ('{"payload": {"amount": NaN}}', "JSON parse error"),
        ("[" * 100_000, "JSON parse error - the body is nested too deeply."),
    ],
)
def test_a_body_that_is_not_json_is_a_400(api: APIClient, raw: str, detail: str) -> None:
    response = api.post(URL, raw, content_type="application/json")

    assert response.status_code == 400
    assert detail in response.json()["detail"]


def test_a_body_that_is_not_a_json_object_is_a_400(api: APIClient) -> None:
    response = api.post(URL, [{"payload": {}}], format="json")

    assert response.status_code == 400
    assert response.json() == {"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]}


def test_a_form_body_is_refused_with_415(api: APIClient) -> None:
    response = api.post(URL, {"payload": "{}"})  # multipart, as a form posts

    assert response.status_code == 415
    assert "Unsupported media type" in response.json()["detail"]


def test_a_body_over_the_upload_limit_is_a_413(api: APIClient, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = api.post(URL, {"payload": {"note": "x" * 1000}}, format="json")

    assert response.status_code == 413
    assert "larger than 1000 bytes" in response.json()["detail"]
    assert not SagaRun.objects.exists()


def test_starting_needs_the_add_permission(api_as: Any) -> None:
    response = api_as("view", "retry", "cancel", "resolve", username="looker").post(URL, {"payload": {}}, format="json")

    assert response.status_code == 403
    assert "'looker' lacks the permission 'sagas.add_sagarun'" in response.json()["detail"]
    assert not SagaRun.objects.exists()


def test_the_saga_started_event_is_in_the_log(api: APIClient) -> None:
    run_id = api.post(URL, {"payload": {"order": 1}}, format="json").json()["id"]
    event = SagaEvent.objects.get(run_id=run_id)
    assert (event.type, event.data["payload"]) == (EventType.SAGA_STARTED, {"order": 1})


def test_a_payload_that_breaks_the_sagas_schema_is_a_400_field_by_field(api: APIClient) -> None:
    body = {"payload": {"account_id": "seven", "lines": [{"sku": "cup", "quantity": 0}]}}
    response = api.post("/api/sagas/tests.typed_pydantic/runs/", body, format="json")

    assert response.status_code == 400
    assert response.json() == {
        "payload": {
            "account_id": ["Input should be a valid integer, unable to parse string as an integer"],
            "lines.0.quantity": ["Input should be greater than 0"],
        }
    }
    assert not SagaRun.objects.exists()

    body = {"payload": {"account_id": 7, "amount": "12.5", "coupon": "X"}}
    response = api.post("/api/sagas/tests.typed_jsonschema/runs/", body, format="json")
    assert response.status_code == 400
    assert response.json() == {
        "payload": {
            "non_field_errors": ["Additional properties are not allowed ('coupon' was unexpected)"],
            "amount": ["'12.5' does not match '^[0-9]+\\\\.[0-9]{2}$'"],
        }
    }
    assert not SagaRun.objects.exists()


def test_a_countdown_starts_the_run_later(api: APIClient) -> None:
    response = api.post(URL, {"payload": order_payload(), "countdown": 90}, format="json")

    assert response.status_code == 201, response.json()
    run = SagaRun.objects.get()
    assert response.json()["start_at"] is not None
    assert run.status == RunStatus.PENDING
    assert 80 < (run.start_at - run.created_at).total_seconds() <= 90


def test_a_countdown_with_an_eta_is_a_400(api: APIClient) -> None:
    body = {"payload": order_payload(), "countdown": 5, "eta": "2030-01-01T00:00:00Z"}
    response = api.post(URL, body, format="json")
    assert response.status_code == 400
    assert response.json() == {"countdown": ["Saga.start() takes countdown or eta, not both."]}
    assert not SagaRun.objects.exists()


# A run's times (start, deadline) stay a day short of datetime's last, so they read in any time zone.
LATEST = "9999-12-30 (UTC), the last day a run's times can hold"
TOO_LATE = f"countdown must start the run by {LATEST}"


@pytest.mark.parametrize(
    ("saga", "field", "value", "message"),
    [
        (PlaceOrder, "countdown", 1e300, f"{TOO_LATE}; 1e+300 seconds from now is past it."),
        (PlaceOrder, "countdown", 3e11, f"{TOO_LATE}; 300000000000.0 seconds from now is past it."),
        (Deadline, "eta", "9999-12-31T00:00:00Z", f"eta must be by {LATEST}, got 9999-12-31T00:00:00+00:00."),
        (StubbornStep, "eta", "9999-12-31T00:00:00Z", f"eta must be by {LATEST}, got 9999-12-31T00:00:00+00:00."),
        # The start fits, but not the deadline: the start plus PlaceOrder's timeout (300 s).
        (
            PlaceOrder,
            "eta",
            "9999-12-30T23:58:00Z",
            "With eta 9999-12-30T23:58:00+00:00, the run's deadline (its start plus the saga's timeout of 300s) "
            f"would fall past {LATEST}: start it sooner, or shorten the timeout.",
        ),
    ],
    ids=["countdown-1e300", "countdown-3e11", "eta-9999-12-31", "eta-9999-12-31-without-timeout", "deadline-of-eta"],
)
def test_a_start_or_deadline_past_the_last_time_a_run_holds_is_a_400_on_the_field_given(
    api: APIClient, saga: Any, field: str, value: Any, message: str
) -> None:
    body = {"payload": order_payload() if saga is PlaceOrder else {}, field: value}

    response = api.post(f"/api/sagas/{saga.name}/runs/", body, format="json")

    assert response.status_code == 400, response.json()
    assert response.json() == {field: [message]}
    assert not SagaRun.objects.exists()


def test_a_countdown_whose_deadline_is_past_the_last_time_a_run_holds_is_a_400(api: APIClient) -> None:
    # Two minutes before the last time a run can hold: PlaceOrder's timeout (300 s) takes its deadline past it.
    countdown = (datetime(9999, 12, 30, 23, 58, tzinfo=UTC) - timezone.now()).total_seconds()

    response = api.post(URL, {"payload": order_payload(), "countdown": countdown}, format="json")

    assert response.status_code == 400, response.json()
    (message,) = response.json()["countdown"]
    assert message.startswith(f"With countdown {countdown!r}, the run's deadline (its start plus the saga's timeout")
    assert not SagaRun.objects.exists()


def test_a_start_a_day_short_of_the_last_time_a_run_holds_is_taken(api: APIClient) -> None:
    body = {"payload": {}, "eta": "9999-12-29T00:00:00Z"}

    response = api.post(f"/api/sagas/{Deadline.name}/runs/", body, format="json")

    assert response.status_code == 201, response.json()
    assert (response.json()["start_at"], response.json()["deadline"]) == (
        "9999-12-29T00:00:00Z",
        "9999-12-29T00:00:02Z",
    )


@pytest.mark.parametrize(
    ("saga", "asked", "message"),
    [
        (PlaceOrder, {"countdown": 1e300}, TOO_LATE),
        (PlaceOrder, {"countdown": 3e11}, TOO_LATE),
        (PlaceOrder, {"countdown": float("inf")}, TOO_LATE),
        (Deadline, {"eta": datetime(9999, 12, 31, tzinfo=UTC)}, f"eta must be by {LATEST}"),
        (
            PlaceOrder,
            {"eta": datetime(9999, 12, 30, 23, 58, tzinfo=UTC)},
            "the saga's timeout of 300s) would fall past",
        ),
    ],
    ids=["countdown-1e300", "countdown-3e11", "countdown-inf", "eta-9999-12-31", "deadline-of-eta"],
)
def test_saga_start_past_the_last_time_a_run_holds_is_a_value_error(
    saga: Any, asked: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        saga.start({}, **asked)
    assert not SagaRun.objects.exists()


def test_a_timeout_that_takes_the_deadline_of_a_run_started_now_past_the_last_time_is_a_value_error() -> None:
    assert start_time(None, None, timeout=300) is None
    with pytest.raises(ValueError, match=re.escape("With a start now, the run's deadline (its start plus the saga's")):
        start_time(None, None, timeout=3e11)
