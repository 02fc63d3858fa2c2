"""Who gets in: a token or an admin session; 401 without credentials, 403 without the endpoint's permission."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.cache import cache
from rest_framework.test import APIClient
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle

from participants.checkout.sagas import PlaceOrder
from sagas.models import SagaRun
from sagas.states import RunStatus
from tests.factories import COMPENSATION_FAILED, SagaRunFactory

pytestmark = pytest.mark.django_db

RUN_ID = "00000000-0000-4000-8000-000000000000"
ENDPOINTS = [
    ("post", f"/api/sagas/{PlaceOrder.name}/runs/", {"payload": {}}),
    ("get", "/api/runs/", None),
    ("get", f"/api/runs/{RUN_ID}/", None),
    ("post", f"/api/runs/{RUN_ID}/retry/", {"reason": "x"}),
    ("post", f"/api/runs/{RUN_ID}/cancel/", {"reason": "x"}),
    ("post", f"/api/runs/{RUN_ID}/resolve/", {"step": "charge_payment", "reason": "x"}),
    ("post", f"/api/runs/{RUN_ID}/signal/", {"name": "approved"}),
]


def call(client: APIClient, method: str, url: str, body: dict[str, Any] | None) -> Any:
    return getattr(client, method)(url, body, format="json") if method == "post" else client.get(url)


@pytest.mark.parametrize(("method", "url", "body"), ENDPOINTS)
def test_without_credentials_every_endpoint_is_a_401_with_a_token_challenge(
    method: str, url: str, body: dict[str, Any] | None
) -> None:
    response = call(APIClient(), method, url, body)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert response.json() == {"detail": "Authentication credentials were not provided."}
    assert not SagaRun.objects.exists()


@pytest.mark.parametrize(("method", "url", "body"), ENDPOINTS)
def test_an_authenticated_user_without_permissions_gets_a_403_everywhere(
    api_as: Any, method: str, url: str, body: dict[str, Any] | None
) -> None:
    response = call(api_as(username="nobody"), method, url, body)

    assert response.status_code == 403
    assert "'nobody' lacks the permission 'sagas." in response.json()["detail"]


def test_a_wrong_token_is_a_401() -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token 0123456789abcdef0123456789abcdef01234567")

    response = client.get("/api/runs/")

    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid token."}


def test_the_token_of_a_deactivated_user_is_a_401(make_user: Any, token_client: Any) -> None:
    user = make_user("view")
    client = token_client(user)
    user.is_active = False
    user.save()

    response = client.get("/api/runs/")

    assert response.status_code == 401
    assert response.json() == {"detail": "User inactive or deleted."}


def test_a_permission_granted_through_a_group_counts(make_user: Any, token_client: Any) -> None:
    operators = Group.objects.create(name="operators")
    operators.permissions.add(Permission.objects.get(codename="view_sagarun"))
    user = make_user()
    user.groups.add(operators)

    assert token_client(user).get("/api/runs/").status_code == 200


def test_a_superuser_may_do_everything(make_user: Any, token_client: Any) -> None:
    run = SagaRunFactory(status=RunStatus.FAILED, step_statuses=COMPENSATION_FAILED)
    client = token_client(make_user(superuser=True, username="root"))

    response = client.post(f"/api/runs/{run.pk}/resolve/", {"step": "charge_payment", "reason": "x"}, format="json")

    assert response.status_code == 200
    assert response.json()["events"][-1]["actor"] == "root"


def test_an_admin_session_reads_runs_and_acts_with_the_csrf_token(make_user: Any) -> None:
    run = SagaRunFactory(status=RunStatus.PENDING)
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(make_user("view", "cancel", username="console"))

    assert client.get(f"/api/runs/{run.pk}/").status_code == 200

    refused = client.post(f"/api/runs/{run.pk}/cancel/", {"reason": "x"}, format="json")
    assert refused.status_code == 403
    assert refused.json()["detail"].startswith("CSRF Failed")

    client.get("/admin/login/")  # sets the csrftoken cookie, as any admin page does
    csrf = client.cookies["csrftoken"].value
    done = client.post(f"/api/runs/{run.pk}/cancel/", {"reason": "x"}, format="json", HTTP_X_CSRFTOKEN=csrf)
    assert done.status_code == 200, done.json()
    assert done.json()["status"] == RunStatus.CANCELLED
    assert done.json()["events"][0]["actor"] == "console"


def test_a_session_without_the_permission_is_a_403(make_user: Any) -> None:
    client = APIClient()
    client.force_login(make_user("add"))

    assert client.get("/api/runs/").status_code == 403


def test_the_schema_and_its_docs_are_for_signed_in_users_only(client: Any, make_user: Any) -> None:
    assert client.get("/api/schema/", HTTP_ACCEPT="application/json").status_code == 401
    assert client.get("/api/docs/").status_code == 401

    client.force_login(make_user("view"))
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    docs = client.get("/api/docs/")
    assert schema.status_code == 200
    assert schema.json()["info"]["title"] == "Saga runs API"
    assert docs.status_code == 200
    page = docs.content.decode()
    assert "swagger-ui" in page
    # Swagger UI comes from this site's static files (drf-spectacular-sidecar), never from a CDN.
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page
    assert "cdn" not in page.lower()
    assert "//unpkg" not in page
    assert "jsdelivr" not in page


@pytest.fixture
def low_rates(monkeypatch: Any) -> Iterator[None]:
    """3 requests a minute per user, 2 per address without credentials, counted from nothing."""
    # DRF reads the rates when its throttle classes are imported: the project's come from API_THROTTLE_*.
    monkeypatch.setattr(UserRateThrottle, "THROTTLE_RATES", {"user": "3/min", "anon": "2/min"})
    monkeypatch.setattr(AnonRateThrottle, "THROTTLE_RATES", {"user": "3/min", "anon": "2/min"})
    cache.clear()
    yield
    cache.clear()


def test_the_api_throttles_a_client_that_sends_too_many_requests(make_user: Any, low_rates: None) -> None:
    client = APIClient()
    client.force_login(make_user("view"))
    answers = [client.get("/api/runs/").status_code for _ in range(4)]
    assert answers == [200, 200, 200, 429]
    assert client.get("/api/runs/").headers["Retry-After"]


def test_the_api_throttles_a_client_without_credentials_past_the_anonymous_rate(low_rates: None) -> None:
    # Every endpoint refuses such a client, and DRF checks permissions before throttles: it was told 401 for ever.
    client = APIClient()
    answers = [call(client, method, url, body) for method, url, body in ENDPOINTS[:3]]

    assert [answer.status_code for answer in answers] == [401, 401, 429]
    assert int(answers[-1].headers["Retry-After"]) > 0
    assert answers[-1].json()["detail"].startswith("Request was throttled.")


def test_the_api_throttles_a_client_with_a_wrong_token_past_the_anonymous_rate(low_rates: None) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token 0000000000000000000000000000000000000000")

    answers = [client.get("/api/runs/").status_code for _ in range(3)]

    assert answers == [401, 401, 429]


def test_the_api_throttles_a_user_refused_for_want_of_the_permission_past_the_users_rate(
    make_user: Any, token_client: Any, low_rates: None
) -> None:
    client = token_client(make_user("add"))

    answers = [client.get("/api/runs/").status_code for _ in range(4)]

    assert answers == [403, 403, 403, 429]
