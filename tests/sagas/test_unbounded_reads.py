"""A run's reads stay bounded whatever it holds: a payload limit at start, list rows without payloads, a run's
events a page at a time in the API and in the admin's timeline."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

import sagas
from participants.checkout.sagas import PlaceOrder
from sagas.models import SagaEvent, SagaRun
from sagas.states import EventType
from tests.factories import SagaRunFactory

pytestmark = pytest.mark.django_db


def run_with_events(count: int) -> SagaRun:
    run = SagaRunFactory(lock_version=count, payload={"note": "x" * 1000})
    SagaEvent.objects.bulk_create(
        SagaEvent(run=run, seq=seq, type=EventType.STEP_STARTED, step="create_order", data={"attempt": seq})
        for seq in range(1, count + 1)
    )
    return run


@pytest.fixture
def api(django_user_model: Any) -> APIClient:
    client = APIClient()
    client.force_login(django_user_model.objects.create_superuser("reader", "r@example.com", "pw"))
    return client


def test_a_payload_over_the_limit_is_refused_and_writes_nothing(settings: Any) -> None:
    settings.SAGAS = {**settings.SAGAS, "MAX_PAYLOAD_BYTES": 1000}
    before = SagaRun.objects.count()
    with pytest.raises(sagas.InvalidPayload, match=r"over the limit of 1000 \(SAGAS\['MAX_PAYLOAD_BYTES'\]\)"):
        PlaceOrder.start({"note": "x" * 1000})
    assert SagaRun.objects.count() == before
    assert PlaceOrder.start({"note": "x" * 900}).pk  # under the limit


def test_the_api_refuses_a_payload_over_the_limit_with_a_field_error(api: APIClient, settings: Any) -> None:
    settings.SAGAS = {**settings.SAGAS, "MAX_PAYLOAD_BYTES": 1000}
    response = api.post(f"/api/sagas/{PlaceOrder.name}/runs/", {"payload": {"note": "x" * 2000}}, format="json")
    assert response.status_code == 400
    assert "MAX_PAYLOAD_BYTES" in response.json()["payload"][0]


def test_a_run_answers_with_its_latest_events_and_pages_the_rest(api: APIClient) -> None:
    run = run_with_events(250)
    body = api.get(f"/api/runs/{run.pk}/").json()
    assert [e["seq"] for e in body["events"]] == list(range(151, 251))
    assert body["events_total"] == 250
    url = body["events_url"]

    seen: list[int] = []
    pages = 0
    next_url: str | None = f"{url}?limit=80"
    while next_url:
        page = api.get(next_url).json()
        seen += [e["seq"] for e in page["results"]]
        next_url = page["next"]
        pages += 1
    assert seen == list(range(1, 251))
    assert pages == 4
    after = api.get(url, {"after": 240}).json()
    assert [e["seq"] for e in after["results"]] == list(range(241, 251))
    assert after["next"] is None


@pytest.mark.parametrize("query", [{"limit": "0"}, {"limit": "1001"}, {"limit": "ten"}, {"after": "-1"}])
def test_a_bad_page_of_events_is_a_400(api: APIClient, query: dict[str, str]) -> None:
    run = run_with_events(3)
    response = api.get(f"/api/runs/{run.pk}/events/", query)
    assert response.status_code == 400
    assert set(response.json()) == set(query)


def test_events_of_an_unknown_run_are_a_404(api: APIClient) -> None:
    assert api.get("/api/runs/00000000-0000-0000-0000-000000000000/events/").status_code == 404


def test_the_admin_timeline_shows_the_latest_events_with_links_to_the_earlier_ones(admin_client: Client) -> None:
    run = run_with_events(450)
    url = reverse("admin:sagas_sagarun_change", args=[run.pk])

    page = admin_client.get(url).content.decode()
    assert page.count('<tr data-type="StepStarted">') == 200
    assert "Events 251 to 450 of 450." in page
    assert "?events_before=251" in page

    earlier = admin_client.get(url, {"events_before": "251"}).content.decode()
    assert earlier.count('<tr data-type="StepStarted">') == 200
    assert "Events 51 to 250 of 450." in earlier
    assert "?events_before=51" in earlier
    assert "Latest events" in earlier

    first = admin_client.get(url, {"events_before": "51"}).content.decode()
    assert "Events 1 to 50 of 450." in first
    assert "?events_before=251" in first  # the page after it
    assert "Earlier events" not in first
