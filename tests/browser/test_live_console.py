"""The console, live, in a real browser: a run page that follows its run to the end without a reload."""

from __future__ import annotations

from pathlib import Path

from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

import sagas
from sagas.states import StepStatus
from tests.browser.test_console import PASSWORD, log_in
from tests.testapp.sagas import Approval
from tests.worker import WorkerProcess, wait_until

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
    page.goto(f"{base}/admin/sagas/sagarun/{run.pk}/change/")
    expect(page.locator("#run-status")).to_have_text("executing")
    expect(page.locator("#live-indicator")).to_contain_text("live")
    expect(page.locator("svg.saga-graph g[data-step=approved][data-status=waiting]")).to_be_visible()
    expect(page.locator("#signal-form")).to_be_visible()
    expect(page.locator("#action-cancel")).to_be_visible()
    page.evaluate("window.sameDocument = true")  # gone if the page reloads

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
    page.screenshot(path=str(artifacts / "run-page-live.png"), full_page=True)
