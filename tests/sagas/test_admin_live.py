"""The run page's live view: who may poll it, what a poll that finds nothing new costs, and that its parts are the
page's own."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from sagas.admin.live import PARTS
from sagas.models import SagaRun
from sagas.states import RunStatus, StepStatus
from tests.factories import COMPENSATION_FAILED, SagaRunFactory, waiting_run

pytestmark = pytest.mark.django_db


def live_url(run: SagaRun) -> str:
    return reverse("admin:sagas_sagarun_live", args=[run.pk])


@pytest.fixture
def run() -> SagaRun:
    """Waiting for its ``approved`` signal, with a step output holding a card number the page masks."""
    run = waiting_run()
    run.steps.filter(name="reserve").update(output={"card_number": "4111111111111111", "reserved": 2})
    return run


def test_a_poll_answers_the_status_version_and_every_part_of_the_page(admin_client, run) -> None:
    response = admin_client.get(live_url(run))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert "no-cache" in response["Cache-Control"] and "private" in response["Cache-Control"]  # noqa: PT018
    data = response.json()
    assert (data["run"], data["status"], data["finished"]) == (str(run.pk), RunStatus.EXECUTING, False)
    assert response["ETag"] == f'"{data["version"]}"'
    assert set(data["parts"]) == set(PARTS)
    assert 'data-step="approved" data-status="waiting"' in data["parts"]["graph"]
    assert '<tr data-step="reserve">' in data["parts"]["steps"]
    assert 'id="signal-form"' in data["parts"]["signal"]
    assert 'id="action-cancel"' in data["parts"]["actions"]
    assert data["keys"] == {"actions": "cancel", "signal": "approved"}
    assert "4111111111111111" not in response.content.decode()  # masked, as on the page
    assert "&quot;reserved&quot;: 2" in data["parts"]["steps"]


def test_the_parts_are_rendered_as_the_page_renders_them(admin_client, run) -> None:
    page = admin_client.get(reverse("admin:sagas_sagarun_change", args=[run.pk])).content.decode()
    data = admin_client.get(live_url(run)).json()
    for name in ("facts", "graph", "steps", "timeline", "actions"):  # findings and error: the test below
        assert data["parts"][name] in page, name
    assert f'data-live-url="{live_url(run)}"' in page
    assert f'data-live-version="{data["version"]}"' in page
    assert 'data-live-finished="false"' in page
    assert 'data-live-key="approved"' in page
    assert "sagas/live.js" in page


def test_the_error_and_findings_parts_are_filled_and_rendered_as_the_page_renders_them(admin_client) -> None:
    """A failed run has an error and a finding (a compensation waits for a person): neither part is empty, so the
    comparison with the page says something (an empty part is in every page)."""
    run = SagaRunFactory(
        status=RunStatus.FAILED,
        step_statuses=COMPENSATION_FAILED,
        error={"step": "schedule_shipment", "type": "x.No", "message": "the carrier said no", "class": "business"},
    )
    page = admin_client.get(reverse("admin:sagas_sagarun_change", args=[run.pk])).content.decode()
    parts = admin_client.get(live_url(run)).json()["parts"]
    assert "the carrier said no" in parts["error"]
    assert 'data-cause="' in parts["findings"]
    for name in ("findings", "error"):
        assert parts[name] in page, name


def test_a_poll_that_names_the_version_shown_gets_304_until_the_run_changes(admin_client, run) -> None:
    etag = admin_client.get(live_url(run))["ETag"]
    with CaptureQueriesContext(connection) as captured:
        unchanged = admin_client.get(live_url(run), headers={"If-None-Match": etag})
    assert unchanged.status_code == 304
    assert unchanged["ETag"] == etag
    assert not unchanged.content
    assert len(captured) <= 8  # the session, the user, the run, its steps, whether it is stuck: not the page

    signal = reverse("admin:sagas_sagarun_signal", args=[run.pk])
    assert admin_client.post(signal, {"name": "approved", "data": '{"ok": true}'}).status_code == 302
    changed = admin_client.get(live_url(run), headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed["ETag"] != etag
    data = changed.json()
    assert data["keys"]["signal"] == ""  # nothing waits any more: the form goes
    assert "signal-form" not in data["parts"]["signal"]
    assert 'data-type="SignalReceived"' in data["parts"]["timeline"]


def test_a_finished_run_says_so(admin_client) -> None:
    run = SagaRunFactory(status=RunStatus.COMPLETED, step_statuses={"create_order": StepStatus.SUCCEEDED})
    data = admin_client.get(live_url(run)).json()
    assert (data["status"], data["finished"]) == (RunStatus.COMPLETED, True)
    page = admin_client.get(reverse("admin:sagas_sagarun_change", args=[run.pk])).content.decode()
    assert 'data-live-finished="true"' in page


def test_the_timeline_page_shown_is_the_one_polled(admin_client, run, settings) -> None:
    settings.SAGAS = {**settings.SAGAS, "ADMIN_TIMELINE_EVENTS": 1}
    page = admin_client.get(reverse("admin:sagas_sagarun_change", args=[run.pk]), {"events_before": "3"})
    assert f'data-live-url="{live_url(run)}?events_before=3"' in page.content.decode()


def test_a_viewer_may_poll_and_sees_no_action(client, run) -> None:
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_sagarun"))
    client.force_login(viewer)
    data = client.get(live_url(run)).json()
    assert data["keys"] == {"actions": "", "signal": ""}
    assert "action-" not in data["parts"]["actions"]
    assert "signal-form" not in data["parts"]["signal"]


def test_anonymous_and_non_staff_are_sent_to_log_in(client, run) -> None:
    anonymous = client.get(live_url(run))
    assert anonymous.status_code == 302
    assert reverse("admin:login") in anonymous["Location"]
    client.force_login(User.objects.create_user("customer", password="pw"))
    refused = client.get(live_url(run))
    assert refused.status_code == 302
    assert reverse("admin:login") in refused["Location"]


def test_staff_without_the_view_permission_is_refused(client, run) -> None:
    client.force_login(User.objects.create_user("stranger", password="pw", is_staff=True))
    assert client.get(live_url(run)).status_code == 403


def test_an_unknown_run_is_a_404(admin_client) -> None:
    assert admin_client.get(reverse("admin:sagas_sagarun_live", args=[uuid.uuid4()])).status_code == 404
