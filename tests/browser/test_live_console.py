"""The console, live, in a real browser: a run page that follows its run to the end without a reload, and the
health page's charts of the runs a test made."""

from __future__ import annotations

from pathlib import Path

from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

import sagas
from participants.checkout.sagas import PlaceOrder
from sagas.states import RunStatus, StepStatus
from tests.browser.test_console import PASSWORD, UNSERVICEABLE, failed_and_completed_runs, log_in
from tests.factories import waiting_run
from tests.integration.conftest import Shop
from tests.testapp.sagas import Approval
from tests.worker import WorkerProcess, wait_for_run, wait_until

# Generous: the page polls every few seconds and the worker shares the machine; nothing here measures time.
LIVE_TIMEOUT_MS = 60_000


def test_the_run_page_follows_a_run_from_executing_to_completed_by_itself(
    live_server, worker: WorkerProcess, page: Page, artifacts: Path
) -> None:
    run = Approval.start({"order": 12})
    wait_until(lambda: run.steps.get(name="approved").status == StepStatus.WAITING, worker, "the run to wait")
    User.objects.create_superuser("watcher", "watcher@example.com", PASSWORD)
    base = live_server.url

    log_in(page, base, "watcher")
    polls: list[int] = []
    page.on("response", lambda response: polls.append(response.status) if "/live/" in response.url else None)
    page.goto(f"{base}/admin/sagas/sagarun/{run.pk}/change/")
    expect(page.locator("#run-status")).to_have_text("executing")
    expect(page.locator("#live-indicator")).to_contain_text("live")
    expect(page.locator("svg.saga-graph g[data-step=approved][data-status=waiting]")).to_be_visible()
    expect(page.locator("#signal-form")).to_be_visible()
    expect(page.locator("#action-cancel")).to_be_visible()
    page.evaluate("window.sameDocument = true")  # gone if the page reloads
    # While nothing happens, a poll gets 304 Not Modified: the page is not rendered again.
    with page.expect_response(lambda r: "/live/" in r.url and r.status == 304, timeout=LIVE_TIMEOUT_MS):
        pass  # the next poll

    # Someone else lets the run go on (the API, the command line, another person's console).
    sagas.signal(run.pk, "approved", {"tracking": "LIVE-1"}, actor="elsewhere")

    expect(page.locator("#run-status")).to_have_text("completed", timeout=LIVE_TIMEOUT_MS)
    expect(page.locator("#run-status")).to_have_class("saga-badge saga-completed")
    expect(page.locator("svg.saga-graph g[data-step=after][data-status=succeeded]")).to_be_visible()
    expect(page.locator("#steps tr[data-step=approved]")).to_contain_text("succeeded")
    expect(page.locator("#timeline tbody tr[data-type=SignalReceived]")).to_contain_text("elsewhere")
    expect(page.locator("#timeline tbody tr[data-type=SagaCompleted]")).to_have_count(1)
    expect(page.locator("#signal-form")).to_have_count(0)  # nothing waits any more
    expect(page.locator("#action-cancel")).to_have_count(0)  # a completed run cannot be cancelled
    expect(page.locator("#live-indicator")).to_contain_text("run finished")
    assert page.evaluate("window.sameDocument") is True
    assert 200 in polls  # the poll that brought the change
    page.screenshot(path=str(artifacts / "run-page-live.png"), full_page=True)


def test_a_page_whose_session_ended_stops_polling_and_asks_for_a_reload(live_server, page: Page) -> None:
    run = waiting_run()
    User.objects.create_superuser("leaver", "leaver@example.com", PASSWORD)
    base = live_server.url
    log_in(page, base, "leaver")
    page.goto(f"{base}/admin/sagas/sagarun/{run.pk}/change/")
    expect(page.locator("#live-indicator")).to_have_text("live")

    page.context.clear_cookies()  # logged out elsewhere: the next poll lands on the login page

    expect(page.locator("#live-indicator")).to_have_text("not updating: reload the page", timeout=LIVE_TIMEOUT_MS)
    expect(page.locator("#run-status")).to_have_text("executing")  # what it showed stays


def test_the_health_page_charts_the_runs_by_hour_and_by_duration(
    live_server, worker: WorkerProcess, shop: Shop, page: Page, artifacts: Path
) -> None:
    compensated = wait_for_run(PlaceOrder.start(shop.payload(shipping_address=UNSERVICEABLE)), worker)
    assert compensated.status == RunStatus.COMPENSATED
    failed_and_completed_runs(shop, worker)
    User.objects.create_superuser("lead", "lead@example.com", PASSWORD)
    base = live_server.url

    log_in(page, base, "lead")
    page.goto(f"{base}/admin/sagas/sagarun/health/")
    activity = page.locator("#activity-chart")
    expect(activity).to_be_visible()
    expect(activity.locator("desc")).to_have_text(
        "3 run(s) started in the window: 1 completed, 1 compensated, 1 failed, 0 cancelled, 0 in progress"
    )
    for series in ("completed", "compensated", "failed"):
        segment = activity.locator(f"rect.segment[data-series={series}]")
        expect(segment).to_have_count(1)
        expect(segment.locator("title")).to_contain_text(f": 1 {series}")
    started = activity.locator("g.period").evaluate_all("gs => gs.map(g => +g.dataset.started)")
    assert sum(started) == 3 and len(started) >= 24  # noqa: PT018 (every hour of the window, empty ones too)

    durations = page.locator("#durations-chart")
    expect(durations).to_be_visible()
    expect(durations.locator("desc")).to_contain_text("3 finished run(s) by duration")
    runs = durations.locator("g.bucket").evaluate_all("gs => gs.map(g => +g.dataset.runs)")
    assert sum(runs) == 3
    expect(durations.locator("g.bucket rect title").first).to_contain_text("run(s)")

    page.click("#activity summary")  # the same counts as a table
    rows = page.locator("#activity table tbody tr")
    expect(rows.first).to_be_visible()
    assert sum(rows.evaluate_all("rs => rs.map(r => +r.cells[1].textContent)")) == 3
    page.screenshot(path=str(artifacts / "health-charts.png"), full_page=True)
