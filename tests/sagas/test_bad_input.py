"""Bad input to the console and to definitions gets a clear answer, never a 500 or a secret in clear."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

import sagas
from sagas.exceptions import InvalidDefinition
from tests.testapp.sagas import record

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("hours", ["nan", "inf", "-inf", "1e10", "-3", "0", "soon"])
def test_health_page_refuses_a_window_it_cannot_use_with_a_message(admin_client: Client, hours: str) -> None:
    response = admin_client.get(reverse("admin:sagas_health"), {"hours": hours})
    assert response.status_code == 200
    page = response.content.decode()
    assert "ours must be a number above 0 and at most" in page
    assert "Runs started in the last 24 h" in page  # the default window instead


def test_health_page_takes_a_sensible_window(admin_client: Client) -> None:
    page = admin_client.get(reverse("admin:sagas_health"), {"hours": "6"}).content.decode()
    assert "Runs started in the last 6 h" in page
    assert "ours must be" not in page


@pytest.mark.parametrize("action", ["retry", "resolve", "cancel"])
def test_an_action_on_something_that_is_not_a_run_id_is_a_404(admin_client: Client, action: str) -> None:
    url = reverse(f"admin:sagas_sagarun_{action}", args=["not-a-uuid"])
    assert admin_client.get(url).status_code == 404
    assert admin_client.post(url, {"reason": "r"}).status_code == 404


@pytest.mark.parametrize(
    ("attribute", "value"),
    [("name", "tests.newline\n"), ("step", "charge\n"), ("service", "payments\n")],
)
def test_a_name_with_a_trailing_newline_is_refused(attribute: str, value: str) -> None:
    step = sagas.Step(
        record,
        name=value if attribute == "step" else "charge",
        service=value if attribute == "service" else None,
    )
    with pytest.raises(InvalidDefinition):

        class Newline(sagas.Saga):
            name = value if attribute == "name" else "tests.newline_ok"
            steps = [step]


def test_a_receiver_name_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(InvalidDefinition, match="Receiver name"):
        sagas.on("tests.x.completed", name="tests.receiver\n")(lambda message: None)


def test_a_searchable_key_that_is_masked_is_refused_at_definition() -> None:
    with pytest.raises(InvalidDefinition, match=r"searchable keys \['card_number'\] are masked"):

        class SearchesSecrets(sagas.Saga):
            name = "tests.searches_secrets"
            searchable = ["customer_email", "card_number"]
            steps = [sagas.Step(record, name="charge")]


@pytest.mark.parametrize("hours", ["nan", "inf", "1e10", "0"])
def test_saga_health_refuses_a_window_it_cannot_use(hours: str) -> None:
    with pytest.raises(CommandError, match="--hours must be above 0 and at most"):
        call_command("saga_health", "--hours", hours, stdout=io.StringIO())


def test_admin_logins_are_locked_out_after_too_many_failures(client: Client, settings) -> None:
    from django.contrib.auth.models import User

    User.objects.create_superuser("ops", "ops@example.com", "right-password")
    login = reverse("admin:login")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        failed = client.post(login, {"username": "ops", "password": "guess"})
        assert failed.status_code == 200  # the form again, with its error
    assert client.post(login, {"username": "ops", "password": "guess"}).status_code == 429
    # Locked out: even the right password is refused from this address until the cool-off passes.
    assert client.post(login, {"username": "ops", "password": "right-password"}).status_code == 429
    other_address = Client(REMOTE_ADDR="198.51.100.7")
    assert other_address.post(login, {"username": "ops", "password": "right-password"}).status_code == 302
