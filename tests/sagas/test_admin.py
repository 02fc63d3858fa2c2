"""The operator's console in the admin: list, filters, search, run page, actions with permissions, health."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from participants.checkout.sagas import PlaceOrder
from sagas.models import SagaEvent, SagaRun, SagaStepRun
from sagas.states import EventType, RunStatus, StepStatus
from tests.factories import SagaDefinitionFactory, SagaRunFactory, forward_failed_run, waiting_run

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:sagas_sagarun_changelist"


@pytest.fixture
def failed_run() -> SagaRun:
    run = SagaRunFactory(
        status=RunStatus.FAILED,
        idempotency_key="checkout-7",
        correlation_id="req-77",
        payload={"customer_email": "ada@example.com", "card_number": "4111111111111111"},
        search_text="ada@example.com 12",
        step_statuses={
            "create_order": StepStatus.COMPENSATED,
            "reserve_stock": StepStatus.COMPENSATED,
            "charge_payment": StepStatus.COMPENSATION_FAILED,
            "schedule_shipment": StepStatus.FAILED,
            "send_confirmation": StepStatus.SKIPPED,
        },
    )
    run.steps.filter(name="charge_payment").update(
        attempts=1,
        compensation_attempts=2,
        task_id=f"{run.pk}:charge_payment:1",
        compensation_task_id=f"{run.pk}:charge_payment:compensate:1.2",
        output={"payment_id": 3, "amount": "39.00"},
        error={"class": "transient", "message": "Refund gateway is down", "traceback": "Traceback: boom"},
        failures=[
            {"kind": "compensation", "attempt": 1, "class": "transient", "retry_in": 0.5},
            {"kind": "compensation", "attempt": 2, "class": "transient", "retry_in": None},
        ],
    )
    now = timezone.now()
    for seq, (kind, step, data) in enumerate(
        [
            (EventType.SAGA_STARTED, "", {"saga": run.saga_name}),
            (EventType.STEP_FAILED, "schedule_shipment", {"error": {"class": "invalid_request", "message": "ZZ"}}),
            (EventType.SAGA_FAILED, "", {"compensation_failed": ["charge_payment"]}),
        ],
        start=1,
    ):
        SagaEvent.objects.create(
            run=run, seq=seq, type=kind, step=step, data=data, created_at=now + timedelta(seconds=seq)
        )
    SagaRun.objects.filter(pk=run.pk).update(lock_version=3)
    run.refresh_from_db()
    return run


@pytest.fixture
def viewer(client) -> User:
    """Staff who may look at runs but not act on them."""
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_sagarun"))
    client.force_login(user)
    return user


def test_runs_list_shows_saga_status_current_step_and_attempts(admin_client, failed_run) -> None:
    response = admin_client.get(reverse(CHANGELIST))
    assert response.status_code == 200
    content = response.content.decode()
    assert str(failed_run.pk)[:8] in content
    assert f"orders.place_order v{PlaceOrder.version}" in content
    assert 'class="saga-badge saga-failed"' in content
    assert "charge_payment" in content and "saga-compensation_failed" in content  # noqa: PT018
    assert "1 + 2 undo" in content
    assert "1 awaiting a person" in content  # the highlighted filter, with its count


@pytest.mark.parametrize(("query", "found"), [("person", True), ("stuck", False)])
def test_attention_filter_finds_runs_awaiting_a_person_and_stuck_runs(
    admin_client, failed_run, query: str, found: bool
) -> None:
    moving = SagaRunFactory(status=RunStatus.EXECUTING)
    stale = SagaRunFactory(status=RunStatus.EXECUTING)
    SagaRun.objects.filter(pk=stale.pk).update(updated_at=timezone.now() - timedelta(hours=1))
    results = list(admin_client.get(reverse(CHANGELIST), {"attention": query}).context["cl"].result_list)
    assert (failed_run in results) is found
    assert moving not in results
    assert (stale in results) is (query == "stuck")


@pytest.mark.parametrize("term", ["{pk}", "checkout-7", "req-77", "ada@example.com"])
def test_runs_are_found_by_id_key_correlation_id_and_searchable_payload(admin_client, failed_run, term: str) -> None:
    other = SagaRunFactory(idempotency_key="checkout-other")
    response = admin_client.get(reverse(CHANGELIST), {"q": term.format(pk=failed_run.pk)})
    results = list(response.context["cl"].result_list)
    assert results == [failed_run]
    assert other not in results


def test_searchable_payload_values_are_stored_at_start(django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks():
        run = PlaceOrder.start({"customer_email": "grace@example.com", "account_id": 42, "lines": []})
    assert run.search_text == "grace@example.com 42"


def test_list_of_ten_thousand_runs_takes_no_more_queries_than_a_short_list(admin_client) -> None:
    definition = SagaDefinitionFactory()

    def add_runs(count: int) -> None:
        runs = SagaRun.objects.bulk_create(
            SagaRun(definition=definition, saga_name=definition.name, version=1, correlation_id=str(n))
            for n in range(count)
        )
        SagaStepRun.objects.bulk_create(
            SagaStepRun(run=run, name=step.name, index=i) for run in runs for i, step in enumerate(PlaceOrder.steps)
        )

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(reverse(CHANGELIST)).status_code == 200
        return len(captured)

    add_runs(150)
    few = queries()
    add_runs(9_850)
    assert SagaRun.objects.count() == 10_000
    many = queries()
    assert many == few  # no query per row
    assert many <= 30


def test_run_page_shows_graph_steps_timeline_and_masked_payload(admin_client, failed_run, settings) -> None:
    settings.SAGAS = {**settings.SAGAS, "FLOWER_URL": "http://flower.example:5555"}
    response = admin_client.get(reverse("admin:sagas_sagarun_change", args=[failed_run.pk]))
    assert response.status_code == 200
    content = response.content.decode()
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="saga-graph"' in content
    assert 'data-step="charge_payment" data-status="compensation_failed"' in content
    assert "↶ undo failed" in content  # the compensation edge, coloured by its outcome
    assert "transient: Refund gateway is down" in content
    assert "<details><summary>traceback</summary>" in content and "Traceback: boom" in content  # noqa: PT018
    assert "c1 transient, c2 transient" in content
    assert f"http://flower.example:5555/task/{failed_run.pk}:charge_payment:1" in content
    # Only failed attempts have result rows (saga tasks store no result on success): the link says so.
    failed_attempts = f"/admin/django_celery_results/taskresult/?q={failed_run.pk}%3Acharge_payment%3Acompensate%3A"
    assert f'{failed_attempts}">failed attempts' in content
    assert content.index("SagaStarted") < content.index("StepFailed") < content.index("SagaFailed")
    assert "+1s" in content  # time between events
    assert "4111111111111111" not in content  # masked
    assert "ada@example.com" in content
    assert 'data-cause="compensation_exhausted"' in content  # the diagnosis, with what to do


def test_a_person_with_permissions_sees_the_actions_a_viewer_does_not(admin_client, client, failed_run, viewer) -> None:
    page = reverse("admin:sagas_sagarun_change", args=[failed_run.pk])
    content = admin_client.get(page).content.decode()
    assert 'id="action-retry"' in content
    assert 'id="action-resolve"' in content
    assert 'id="action-cancel"' not in content  # a failed run cannot be cancelled
    viewed = client.get(page)
    assert viewed.status_code == 200
    assert 'id="action-' not in viewed.content.decode()


def test_a_forged_post_without_the_permission_is_refused(client, failed_run, viewer) -> None:
    url = reverse("admin:sagas_sagarun_resolve", args=[failed_run.pk])
    response = client.post(url, {"step": "charge_payment", "reason": "sneaky"})
    assert response.status_code == 403
    failed_run.refresh_from_db()
    assert failed_run.status == RunStatus.FAILED
    assert not SagaEvent.objects.filter(type=EventType.COMPENSATION_RESOLVED).exists()


def test_resolve_needs_a_reason_then_records_actor_reason_and_log_entry(admin_client, admin_user, failed_run) -> None:
    url = reverse("admin:sagas_sagarun_resolve", args=[failed_run.pk])
    page = admin_client.get(url)
    assert page.status_code == 200
    assert '<option value="charge_payment">' in page.content.decode()

    refused = admin_client.post(url, {"step": "charge_payment", "reason": "   "})
    assert refused.status_code == 200
    assert "This field is required." in refused.content.decode()
    failed_run.refresh_from_db()
    assert failed_run.status == RunStatus.FAILED

    done = admin_client.post(url, {"step": "charge_payment", "reason": "refunded by bank transfer #88"})
    assert done.status_code == 302
    failed_run.refresh_from_db()
    assert failed_run.status == RunStatus.COMPENSATED
    event = SagaEvent.objects.get(run=failed_run, type=EventType.COMPENSATION_RESOLVED)
    assert (event.actor, event.data["reason"]) == (admin_user.username, "refunded by bank transfer #88")
    entry = LogEntry.objects.get(object_id=str(failed_run.pk))
    assert (entry.user, entry.get_change_message()) == (admin_user, "Resolve: refunded by bank transfer #88")


def test_an_action_the_state_does_not_allow_shows_the_reason_instead_of_failing(admin_client, failed_run) -> None:
    failed_run.steps.filter(name="charge_payment").update(status=StepStatus.COMPENSATED)
    url = reverse("admin:sagas_sagarun_cancel", args=[failed_run.pk])
    response = admin_client.post(url, {"reason": "stop it"})
    assert response.status_code == 200
    assert "is failed: a compensation gave up" in response.content.decode()
    assert not LogEntry.objects.exists()


def test_bulk_retry_asks_for_a_reason_then_counts_what_it_did(admin_client, failed_run) -> None:
    done = SagaRunFactory(status=RunStatus.COMPLETED)
    selected = [str(failed_run.pk), str(done.pk)]
    confirm = admin_client.post(
        reverse(CHANGELIST), {"action": "retry_runs", "_selected_action": selected}, follow=False
    )
    assert confirm.status_code == 200
    assert "Retry 2 saga run(s)" in confirm.content.decode()

    applied = admin_client.post(
        reverse(CHANGELIST),
        {"action": "retry_runs", "_selected_action": selected, "apply": "1", "reason": "gateway back"},
        follow=True,
    )
    text = applied.content.decode()
    assert "Retry: 1 of 2 run(s) done." in text
    assert "Retry: 1 of 2 run(s) refused." in text
    failed_run.refresh_from_db()
    assert failed_run.status == RunStatus.COMPENSATING
    assert SagaEvent.objects.get(run=failed_run, type=EventType.SAGA_RETRIED).data["reason"] == "gateway back"


def test_bulk_actions_are_offered_only_with_their_permission(admin_client, client, failed_run, viewer) -> None:
    actions = admin_client.get(reverse(CHANGELIST)).context["action_form"].fields["action"].choices
    assert {"retry_runs", "resolve_runs", "cancel_runs"} <= {name for name, _ in actions}
    response = client.get(reverse(CHANGELIST))
    offered = (
        {name for name, _ in response.context["action_form"].fields["action"].choices}
        if response.context.get("action_form")
        else set()
    )
    assert not {"retry_runs", "resolve_runs", "cancel_runs"} & offered


def test_health_page_shows_figures_and_alerts(admin_client, failed_run) -> None:
    SagaRunFactory(status=RunStatus.COMPLETED)
    response = admin_client.get(reverse("admin:sagas_health"))
    assert response.status_code == 200
    report = response.context["report"]
    assert (report.failed, report.completed, report.awaiting_person) == (1, 1, 1)
    content = response.content.decode()
    assert "Failure rate 50.0% is above 5%" in content
    assert "charge_payment" in content


def test_runs_cannot_be_added_changed_or_deleted(admin_client, failed_run) -> None:
    assert admin_client.get(reverse("admin:sagas_sagarun_add")).status_code == 403
    url = reverse("admin:sagas_sagarun_change", args=[failed_run.pk])
    assert admin_client.post(url, {"status": "completed"}).status_code == 403
    assert admin_client.post(reverse("admin:sagas_sagarun_delete", args=[failed_run.pk])).status_code == 403
    failed_run.refresh_from_db()
    assert failed_run.status == RunStatus.FAILED


def test_a_run_that_does_not_exist_is_a_404(admin_client) -> None:
    assert admin_client.get(reverse("admin:sagas_sagarun_retry", args=[uuid.uuid4()])).status_code == 404


def test_definitions_are_listed_with_their_steps(admin_client, failed_run) -> None:
    response = admin_client.get(reverse("admin:sagas_sagadefinition_changelist"))
    assert response.status_code == 200
    assert "create_order → reserve_stock → charge_payment" in response.content.decode()
    definition = failed_run.definition
    page = admin_client.get(reverse("admin:sagas_sagadefinition_change", args=[definition.pk]))
    assert page.status_code == 200
    assert definition.spec_hash in page.content.decode()


def test_outbox_lists_unpublished_messages_and_an_operator_relays_them(
    admin_client, django_capture_on_commit_callbacks
) -> None:
    from sagas.models import SagaOutbox
    from tests.testapp.sagas import Diamond

    with django_capture_on_commit_callbacks():  # the relay never ran
        run = Diamond.start({})
    changelist = reverse("admin:sagas_sagaoutbox_changelist")
    response = admin_client.get(changelist, {"published": "no"})
    assert response.status_code == 200
    assert "tests.diamond.started" in response.content.decode()

    response = admin_client.post(
        changelist,
        {"action": "relay_now", "_selected_action": [str(m.pk) for m in SagaOutbox.objects.filter(run=run)]},
        follow=True,
    )

    assert "Relayed 1 of 1 unpublished message(s)." in response.content.decode()
    assert SagaOutbox.objects.get(run=run).published_at is not None
    detail = admin_client.get(reverse("admin:sagas_sagaoutbox_change", args=[SagaOutbox.objects.get(run=run).pk]))
    assert detail.status_code == 200
    assert admin_client.get(reverse("admin:sagas_sagareceipt_changelist")).status_code == 200


def test_resolve_of_a_step_failed_after_the_pivot_asks_for_its_output(admin_client, admin_user) -> None:
    run = forward_failed_run()
    url = reverse("admin:sagas_sagarun_resolve", args=[run.pk])
    page = admin_client.get(url).content.decode()
    assert '<option value="ship">' in page
    assert 'name="output"' in page

    refused = admin_client.post(url, {"step": "ship", "reason": "couriered", "output": "{not json"})
    assert refused.status_code == 200
    assert "The output is not valid JSON: Expecting property name" in refused.content.decode()

    done = admin_client.post(url, {"step": "ship", "reason": "couriered", "output": '{"tracking": "T-5"}'})
    assert done.status_code == 302
    run.refresh_from_db()
    assert run.status == RunStatus.EXECUTING
    assert run.steps.get(name="ship").output == {"tracking": "T-5"}
    event = SagaEvent.objects.get(run=run, type=EventType.STEP_RESOLVED)
    assert (event.actor, event.data["reason"]) == (admin_user.username, "couriered")


def test_the_resolve_form_of_a_failed_compensation_has_no_output(admin_client, failed_run) -> None:
    page = admin_client.get(reverse("admin:sagas_sagarun_resolve", args=[failed_run.pk])).content.decode()
    assert 'name="output"' not in page


def test_the_run_page_of_a_waiting_run_has_a_signal_form_that_sends_it(admin_client, admin_user) -> None:
    run = waiting_run()
    page = admin_client.get(reverse("admin:sagas_sagarun_change", args=[run.pk])).content.decode()
    assert 'id="signal-form"' in page
    assert '<option value="approved">' in page

    url = reverse("admin:sagas_sagarun_signal", args=[run.pk])
    refused = admin_client.post(url, {"name": "approved", "data": "[1, 2]"})
    assert refused.status_code == 200
    assert "Give a JSON object" in refused.content.decode()

    done = admin_client.post(url, {"name": "approved", "data": '{"approved_by": "ann"}', "reason": "fine"})
    assert done.status_code == 302
    assert run.steps.get(name="approved").output == {"approved_by": "ann"}
    event = SagaEvent.objects.get(run=run, type=EventType.SIGNAL_RECEIVED)
    assert (event.actor, event.data["reason"]) == (admin_user.username, "fine")
    entry = LogEntry.objects.get(object_id=str(run.pk))
    assert entry.get_change_message() == "Signal approved: fine"
    page = admin_client.get(reverse("admin:sagas_sagarun_change", args=[run.pk])).content.decode()
    assert 'id="signal-form"' not in page  # nothing waits any more


def test_the_run_pages_of_parent_and_child_link_each_other(admin_client) -> None:
    parent = SagaRunFactory(status=RunStatus.EXECUTING)
    child = SagaRunFactory(status=RunStatus.COMPLETED, parent=parent, parent_step="charge_payment")
    parent_page = admin_client.get(reverse("admin:sagas_sagarun_change", args=[parent.pk])).content.decode()
    assert reverse("admin:sagas_sagarun_change", args=[child.pk]) in parent_page
    child_page = admin_client.get(reverse("admin:sagas_sagarun_change", args=[child.pk])).content.decode()
    assert reverse("admin:sagas_sagarun_change", args=[parent.pk]) in child_page
    assert "its step charge_payment" in child_page


def test_a_run_past_its_pivot_offers_no_cancel(admin_client) -> None:
    run = forward_failed_run(status=RunStatus.EXECUTING)
    run.steps.filter(name="ship").update(status=StepStatus.RUNNING)
    page = admin_client.get(reverse("admin:sagas_sagarun_change", args=[run.pk])).content.decode()
    assert 'id="action-cancel"' not in page


def test_the_run_page_names_the_worker_process_of_each_attempt(admin_client) -> None:
    run = SagaRunFactory(status=RunStatus.EXECUTING)
    run.steps.filter(name="create_order").update(status=StepStatus.SUCCEEDED, worker="w7@box", worker_pid=4711)
    SagaEvent.objects.create(
        run=run,
        seq=1,
        type=EventType.STEP_STARTED,
        step="create_order",
        data={"from": "pending", "to": "running", "attempt": 1, "task_id": "t", "worker": "w7@box", "pid": 4711},
    )
    page = admin_client.get(reverse("admin:sagas_sagarun_change", args=[run.pk])).content.decode()
    steps = page[page.index('id="steps"') : page.index("</table>", page.index('id="steps"'))]
    row = steps[steps.index('data-step="create_order"') :]
    assert '<td class="saga-worker">w7@box<div class="saga-circuit">pid 4711</div></td>' in row
    assert '<td class="saga-worker">-</td>' in steps[steps.index('data-step="reserve_stock"') :]
    assert "attempt 1; on w7@box pid 4711" in page  # the timeline
