"""The first-cut admin: runs, steps, events and definitions are visible and cannot be edited."""

from __future__ import annotations

import pytest
from django.urls import reverse

from sagas.models import SagaEvent
from sagas.states import EventType, RunStatus, StepStatus
from tests.factories import SagaRunFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def failed_run():
    run = SagaRunFactory(
        status=RunStatus.FAILED,
        idempotency_key="checkout-7",
        step_statuses={"create_order": StepStatus.COMPENSATED, "charge_payment": StepStatus.COMPENSATION_FAILED},
    )
    run.steps.filter(name="charge_payment").update(
        attempts=1,
        compensation_attempts=2,
        error={"class": "transient", "message": "Refund gateway is down"},
        failures=[
            {"kind": "compensation", "attempt": 1, "class": "transient", "retry_in": 0.5},
            {"kind": "compensation", "attempt": 2, "class": "transient", "retry_in": None},
        ],
    )
    SagaEvent.objects.create(run=run, seq=1, type=EventType.SAGA_STARTED, data={"saga": run.saga_name})
    SagaEvent.objects.create(run=run, seq=2, type=EventType.SAGA_FAILED, data={"compensation_failed": ["x"]})
    return run


def test_runs_list_shows_status_saga_and_failed_step(admin_client, failed_run) -> None:
    response = admin_client.get(reverse("admin:sagas_sagarun_changelist"))
    assert response.status_code == 200
    content = response.content.decode()
    assert str(failed_run.pk) in content
    assert "orders.place_order" in content
    assert "charge_payment (compensation_failed)" in content


@pytest.mark.parametrize(
    ("term", "found"),
    [("checkout-7", True), ("{pk}", True), ("not-a-uuid", False), ("checkout-8", False)],
)
def test_runs_are_found_by_id_or_idempotency_key(admin_client, failed_run, term: str, found: bool) -> None:
    other = SagaRunFactory(idempotency_key="checkout-other")
    response = admin_client.get(reverse("admin:sagas_sagarun_changelist"), {"q": term.format(pk=failed_run.pk)})
    assert response.status_code == 200
    results = list(response.context["cl"].result_list)
    assert (failed_run in results) is found
    assert other not in results


def test_runs_filter_by_status(admin_client, failed_run) -> None:
    completed = SagaRunFactory(status=RunStatus.COMPLETED)
    response = admin_client.get(reverse("admin:sagas_sagarun_changelist"), {"status__exact": "failed"})
    assert list(response.context["cl"].result_list) == [failed_run]
    assert completed.pk


def test_run_page_shows_steps_with_errors_and_events_in_order(admin_client, failed_run) -> None:
    response = admin_client.get(reverse("admin:sagas_sagarun_change", args=[failed_run.pk]))
    assert response.status_code == 200
    content = response.content.decode()
    assert "Refund gateway is down" in content
    assert "c1 transient, c2 transient" in content  # every failed attempt, by kind and class
    assert content.index("SagaStarted") < content.index("SagaFailed")
    for step in ("create_order", "reserve_stock", "charge_payment", "schedule_shipment", "send_confirmation"):
        assert step in content
    assert 'name="_save"' not in content  # machine-written: nothing to save


def test_runs_cannot_be_added_changed_or_deleted(admin_client, failed_run) -> None:
    assert admin_client.get(reverse("admin:sagas_sagarun_add")).status_code == 403
    url = reverse("admin:sagas_sagarun_change", args=[failed_run.pk])
    assert admin_client.post(url, {"status": "completed"}).status_code == 403
    assert admin_client.post(reverse("admin:sagas_sagarun_delete", args=[failed_run.pk])).status_code == 403
    failed_run.refresh_from_db()
    assert failed_run.status == RunStatus.FAILED


def test_definitions_are_listed_with_their_steps(admin_client, failed_run) -> None:
    response = admin_client.get(reverse("admin:sagas_sagadefinition_changelist"))
    assert response.status_code == 200
    assert "create_order → reserve_stock → charge_payment" in response.content.decode()
    definition = failed_run.definition
    page = admin_client.get(reverse("admin:sagas_sagadefinition_change", args=[definition.pk]))
    assert page.status_code == 200
    assert definition.spec_hash in page.content.decode()
