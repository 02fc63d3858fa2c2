"""What the services count, only once committed; the gauge read at scrape time; who may read /metrics."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.test import Client
from django.utils import timezone

from participants.checkout.sagas import PlaceOrder
from sagas import recovery
from sagas.models import SagaRun
from sagas.services._core import lock_run
from sagas.services.steps import run_complete_locked
from sagas.states import RunStatus, StepStatus
from tests.factories import SagaRunFactory
from tests.metrics import scrape

SAGA = PlaceOrder.name
ALL_SUCCEEDED = {step.name: StepStatus.SUCCEEDED for step in PlaceOrder.steps}


def complete(run: SagaRun) -> bool:
    """What a run's last step does once it succeeded: complete the run, if every step has."""
    with transaction.atomic():
        return run_complete_locked(lock_run(run.pk))


def completed_runs(client: Client) -> float:
    return scrape(client).value("sagas_runs_finished_total", saga=SAGA, outcome="completed")


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_transition_counts_nothing(client: Client) -> None:
    run = SagaRunFactory(status=RunStatus.EXECUTING, step_statuses=ALL_SUCCEEDED)
    before = completed_runs(client)

    def complete_then_fail() -> None:
        with transaction.atomic():
            assert complete(run)
            raise RuntimeError("the surrounding transaction fails after the run completed")

    with pytest.raises(RuntimeError, match="surrounding transaction"):
        complete_then_fail()

    run.refresh_from_db()
    assert run.status == RunStatus.EXECUTING
    assert completed_runs(client) == before
    assert complete(run)  # committed this time
    assert completed_runs(client) == before + 1


@pytest.mark.django_db(transaction=True)
def test_a_start_counts_once_and_a_repeated_key_counts_nothing(client: Client) -> None:
    before = scrape(client).value("sagas_runs_started_total", saga=SAGA)
    PlaceOrder.start({"customer_email": "a@example.com"}, idempotency_key="metrics-once")
    PlaceOrder.start({"customer_email": "a@example.com"}, idempotency_key="metrics-once")
    assert scrape(client).value("sagas_runs_started_total", saga=SAGA) == before + 1


@pytest.mark.django_db
def test_a_reaper_redrive_counts_by_action_without_the_run(client: Client, django_capture_on_commit_callbacks) -> None:
    run = SagaRunFactory(status=RunStatus.PENDING)
    SagaRun.objects.filter(pk=run.pk).update(updated_at=timezone.now() - timedelta(hours=1))
    before = scrape(client)
    with django_capture_on_commit_callbacks(execute=True):
        (outcome,) = recovery.reap()
    assert outcome.action == "publish the steps again (dispatch lost)"
    after = scrape(client)
    assert after.changes(before, "sagas_redrives_total") == {frozenset({"saga": SAGA, "action": "publish"}.items()): 1}
    assert str(run.pk) not in after.text


@pytest.mark.django_db
def test_awaiting_a_person_is_counted_in_the_database_at_each_scrape(client: Client) -> None:
    assert scrape(client).value("sagas_runs_awaiting_person", saga=SAGA) == 0  # listed before any run failed
    first, _ = SagaRunFactory(status=RunStatus.FAILED), SagaRunFactory(status=RunStatus.FAILED)
    SagaRunFactory(status=RunStatus.COMPENSATED)
    assert scrape(client).value("sagas_runs_awaiting_person", saga=SAGA) == 2
    SagaRun.objects.filter(pk=first.pk).update(status=RunStatus.COMPENSATED)  # resolved, say
    assert scrape(client).value("sagas_runs_awaiting_person", saga=SAGA) == 1


@pytest.mark.django_db
def test_stuck_runs_are_counted_in_the_database_at_each_scrape(client: Client) -> None:
    assert scrape(client).value("sagas_runs_stuck", saga=SAGA) == 0
    run = SagaRunFactory(status=RunStatus.EXECUTING)
    assert scrape(client).value("sagas_runs_stuck", saga=SAGA) == 0  # it just moved
    SagaRun.objects.filter(pk=run.pk).update(updated_at=timezone.now() - timedelta(hours=1))
    assert scrape(client).value("sagas_runs_stuck", saga=SAGA) == 1


@pytest.mark.django_db
@pytest.mark.django_db
@pytest.mark.parametrize(("address", "status"), [("127.0.0.1", 200), ("::1", 200), ("203.0.113.9", 403)])
def test_metrics_are_served_to_loopback_only_by_default(client: Client, address: str, status: int) -> None:
    assert client.get("/metrics", REMOTE_ADDR=address).status_code == status


@pytest.mark.django_db
def test_metrics_can_be_opened_to_every_address(client: Client, settings) -> None:
    settings.SAGAS = {**settings.SAGAS, "METRICS_ALLOWED_IPS": None}
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("authorization", "status"),
    [("Bearer scrape-me", 200), ("bearer scrape-me", 200), ("Bearer wrong", 403), ("Token scrape-me", 403), ("", 403)],
)
def test_a_scraper_with_the_metrics_token_may_read_from_anywhere(
    client: Client, settings, authorization: str, status: int
) -> None:
    settings.SAGAS = {**settings.SAGAS, "METRICS_TOKEN": "scrape-me"}
    response = client.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION=authorization)
    assert response.status_code == status


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("address", "status"),
    [("10.1.2.3", 200), ("127.0.0.1", 200), ("::ffff:10.0.0.7", 200), ("192.168.1.1", 403), ("2001:db8::1", 403)],
)
def test_metrics_are_refused_outside_the_allowed_networks(client: Client, settings, address: str, status: int) -> None:
    settings.SAGAS = {**settings.SAGAS, "METRICS_ALLOWED_IPS": ["10.0.0.0/8", "127.0.0.1"]}
    assert client.get("/metrics", REMOTE_ADDR=address).status_code == status


@pytest.mark.parametrize("allowed", ["10.0.0.0/8", ["10.0.0.0/8", "the office"]])
def test_a_malformed_allow_list_is_a_configuration_error(client: Client, settings, allowed: object) -> None:
    settings.SAGAS = {**settings.SAGAS, "METRICS_ALLOWED_IPS": allowed}
    client.raise_request_exception = True
    with pytest.raises(ImproperlyConfigured, match="METRICS_ALLOWED_IPS"):
        client.get("/metrics")


@pytest.mark.django_db
def test_unpublished_outbox_messages_are_counted_at_each_scrape(
    client: Client, django_capture_on_commit_callbacks
) -> None:
    from sagas import outbox
    from sagas.models import SagaOutbox
    from tests.testapp.sagas import Diamond

    assert scrape(client).value("sagas_outbox_unpublished") == 0
    with django_capture_on_commit_callbacks():  # the relay has not run
        run = Diamond.start({})
    assert scrape(client).value("sagas_outbox_unpublished") == 1
    outbox.relay(list(SagaOutbox.objects.filter(run=run).values_list("pk", flat=True)))
    assert scrape(client).value("sagas_outbox_unpublished") == 0


@pytest.mark.django_db(transaction=True)
def test_a_runs_time_to_its_outcome_is_observed_by_saga_and_outcome(client: Client) -> None:
    run = SagaRunFactory(status=RunStatus.EXECUTING, step_statuses=ALL_SUCCEEDED)
    SagaRun.objects.filter(pk=run.pk).update(created_at=timezone.now() - timedelta(seconds=90))
    before = scrape(client)
    assert complete(run)
    after = scrape(client)
    labels = {"saga": SAGA, "outcome": "completed"}
    name = "sagas_run_duration_seconds"
    assert after.value(f"{name}_count", **labels) == before.value(f"{name}_count", **labels) + 1
    observed = after.value(f"{name}_sum", **labels) - before.value(f"{name}_sum", **labels)
    assert 90 <= observed < 90 + 60

    def in_bucket(scraped, le: str) -> float:
        return scraped.value(f"{name}_bucket", le=le, **labels)

    # In the bucket of up to 5 minutes, not in the one of up to a minute.
    assert in_bucket(after, "300.0") - in_bucket(before, "300.0") == 1
    assert in_bucket(after, "60.0") == in_bucket(before, "60.0")


@pytest.mark.django_db
def test_each_breakers_state_is_a_gauge_read_from_redis_at_each_scrape(client: Client) -> None:
    from tests.conftest import open_breaker, reset_breakers

    reset_breakers()
    name = "sagas_circuit_breaker_state"
    closed = scrape(client)
    assert closed.value(name, service="payments", state="closed") == 1
    assert closed.value(name, service="payments", state="open") == 0
    open_breaker("payments")
    try:
        opened = scrape(client)
        assert opened.value(name, service="payments", state="open") == 1
        assert opened.value(name, service="payments", state="closed") == 0
        assert opened.value(name, service="inventory", state="closed") == 1  # the others are unchanged
    finally:
        reset_breakers()


@pytest.mark.django_db
def test_the_gauges_register_on_a_projects_own_registry() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from sagas.collectors import register_collectors

    registry = CollectorRegistry()
    register_collectors(registry)  # what a django-prometheus project does with the default registry
    SagaRunFactory(status=RunStatus.FAILED)
    text = generate_latest(registry).decode()
    assert f'sagas_runs_awaiting_person{{saga="{SAGA}"}} 1.0' in text
    assert "sagas_outbox_unpublished 0.0" in text
    assert 'sagas_circuit_breaker_state{service="payments"' in text
