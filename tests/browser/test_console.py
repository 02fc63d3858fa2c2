"""A person on call, in a real browser: finds the run awaiting them, understands it, resolves it with a reason."""

from __future__ import annotations

from pathlib import Path

from django.contrib.auth.models import Permission, User
from playwright.sync_api import Page, expect

from participants.checkout.sagas import PlaceOrder
from sagas.models import SagaEvent, SagaRun
from sagas.states import EventType, RunStatus, StepStatus
from tests.integration.conftest import Shop
from tests.testapp.sagas import Approval
from tests.worker import WorkerProcess, wait_for_run, wait_until

UNSERVICEABLE = {"country": "ZZ", "city": "Nowhere", "line1": "1 Road", "postal_code": "0000"}
PASSWORD = "correct horse battery staple"


def failed_and_completed_runs(shop: Shop, worker: WorkerProcess) -> tuple[SagaRun, SagaRun]:
    completed = wait_for_run(PlaceOrder.start(shop.payload()), worker)
    shop.account.refund_gateway_down = True
    shop.account.save(update_fields=["refund_gateway_down"])
    failed = wait_for_run(PlaceOrder.start(shop.payload(shipping_address=UNSERVICEABLE)), worker)
    assert (completed.status, failed.status) == (RunStatus.COMPLETED, RunStatus.FAILED)
    return failed, completed


def log_in(page: Page, base: str, username: str) -> None:
    page.goto(f"{base}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    expect(page.locator("#user-tools")).to_contain_text(username, ignore_case=True)


def test_on_call_finds_understands_and_resolves_a_failed_run(
    live_server, worker: WorkerProcess, shop: Shop, page: Page, artifacts: Path
) -> None:
    failed, _ = failed_and_completed_runs(shop, worker)
    User.objects.create_superuser("oncall", "oncall@example.com", PASSWORD)
    base = live_server.url

    log_in(page, base, "oncall")
    page.goto(f"{base}/admin/sagas/sagarun/")
    expect(page.locator("#result_list tbody tr")).to_have_count(2)
    page.screenshot(path=str(artifacts / "runs-list.png"), full_page=True)

    page.click("text=1 awaiting a person")
    expect(page).to_have_url(f"{base}/admin/sagas/sagarun/?attention=person")
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    page.click(f"#result_list a:has-text('{str(failed.pk)[:8]}')")

    expect(page.locator("#run-status")).to_have_text("failed")
    expect(page.locator("svg.saga-graph g.step")).to_have_count(len(PlaceOrder.steps))
    expect(page.locator("svg.saga-graph g[data-step=charge_payment][data-status=compensation_failed]")).to_be_visible()
    expect(page.locator("#timeline tbody tr[data-type=SagaFailed]")).to_have_count(1)
    expect(page.locator("[data-cause=compensation_exhausted]")).to_contain_text("charge_payment")
    page.screenshot(path=str(artifacts / "run-page.png"), full_page=True)

    page.click("#action-resolve")
    page.select_option("#id_step", "charge_payment")
    page.fill("#id_reason", "Refunded by bank transfer #4411")
    page.click("#confirm")

    expect(page.locator("#run-status")).to_have_text("compensated")
    resolved = page.locator("#timeline tbody tr[data-type=CompensationResolved]")
    expect(resolved).to_contain_text("oncall")
    expect(resolved).to_contain_text("Refunded by bank transfer #4411")
    event = SagaEvent.objects.get(run=failed, type=EventType.COMPENSATION_RESOLVED)
    assert (event.actor, event.data["reason"]) == ("oncall", "Refunded by bank transfer #4411")

    page.goto(f"{base}/admin/sagas/sagarun/health/")
    expect(page.locator("#figures")).to_contain_text("completed")
    page.screenshot(path=str(artifacts / "health-page.png"), full_page=True)


def test_without_the_permission_there_is_no_button_and_a_forged_post_is_refused(
    live_server, worker: WorkerProcess, shop: Shop, page: Page
) -> None:
    failed, _ = failed_and_completed_runs(shop, worker)
    viewer = User.objects.create_user("viewer", password=PASSWORD, is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_sagarun"))
    base = live_server.url

    log_in(page, base, "viewer")
    page.goto(f"{base}/admin/sagas/sagarun/{failed.pk}/change/")
    expect(page.locator("#run-status")).to_have_text("failed")
    expect(page.locator("[id^=action-]")).to_have_count(0)

    # A POST with a valid session and CSRF token, as a crafted form would send: refused for the permission.
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    url = f"{base}/admin/sagas/sagarun/{failed.pk}/resolve/"
    response = page.request.post(
        url,
        form={"step": "charge_payment", "reason": "I should not", "csrfmiddlewaretoken": csrf},
        headers={"X-CSRFToken": csrf, "Referer": url},
    )
    assert response.status == 403
    failed.refresh_from_db()
    assert failed.status == RunStatus.FAILED


def test_a_manager_approves_a_waiting_run_from_its_page(live_server, worker: WorkerProcess, page: Page) -> None:
    run = Approval.start({"order": 9})
    wait_until(lambda: run.steps.get(name="approved").status == StepStatus.WAITING, worker, "the run to wait")
    User.objects.create_superuser("manager", "manager@example.com", PASSWORD)
    base = live_server.url

    log_in(page, base, "manager")
    page.goto(f"{base}/admin/sagas/sagarun/{run.pk}/change/")
    expect(page.locator("#run-status")).to_have_text("executing")
    expect(page.locator("svg.saga-graph g[data-step=approved][data-status=waiting]")).to_be_visible()
    page.select_option("#signal-form select[name=name]", "approved")
    page.fill("#signal-form textarea[name=data]", '{"tracking": "APPROVED-IN-BROWSER"}')
    page.fill("#signal-form textarea[name=reason]", "known customer")
    page.click("#send-signal")

    received = page.locator("#timeline tbody tr[data-type=SignalReceived]")
    expect(received).to_contain_text("manager")
    run = wait_for_run(run, worker)
    assert run.status == RunStatus.COMPLETED
    assert run.steps.get(name="after").output == {"notified_with": "APPROVED-IN-BROWSER"}
