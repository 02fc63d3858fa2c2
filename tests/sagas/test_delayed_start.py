"""Delayed start: a run started with a countdown or an eta stays pending, and no step runs before its time."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

import sagas
from participants.checkout.sagas import PlaceOrder
from sagas import leases, recovery, services
from sagas.conf import sagas_settings
from sagas.diagnose import diagnose
from sagas.models import SagaEvent, SagaRun
from sagas.outcomes import Outcome
from sagas.selectors import stuck
from sagas.states import EventType, RunStatus, StepStatus
from tests.factories import order_payload
from tests.metrics import publishes

pytestmark = pytest.mark.django_db


def test_a_countdown_stores_a_pending_run_whose_steps_wait_for_its_time(django_capture_on_commit_callbacks) -> None:
    before = timezone.now()
    with django_capture_on_commit_callbacks() as callbacks:
        run = PlaceOrder.start(order_payload(), countdown=600)

    run.refresh_from_db()
    assert run.status == RunStatus.PENDING
    assert before + timedelta(seconds=600) <= run.start_at <= timezone.now() + timedelta(seconds=600)
    assert run.deadline == run.start_at + timedelta(seconds=PlaceOrder.timeout)  # the timeout counts from the start
    started = SagaEvent.objects.get(run=run, type=EventType.SAGA_STARTED)
    assert started.data["start_at"] == run.start_at.isoformat()
    first, deadline_check = publishes(callbacks)
    assert first.options["countdown"] == 300.0  # a hop the broker keeps, not the whole wait
    assert deadline_check.options["countdown"] == 300.5  # hops too, towards a deadline 900 s away
    assert sagas.rebuild(run.pk).differences(run) == []


def test_an_eta_is_when_the_run_may_start() -> None:
    eta = timezone.now() + timedelta(hours=2)
    run = PlaceOrder.start(order_payload(), eta=eta)
    assert SagaRun.objects.get(pk=run.pk).start_at == eta


def test_before_its_time_a_step_message_waits_and_uses_no_attempt() -> None:
    run = PlaceOrder.start(order_payload(), countdown=120)

    claim = services.step_claim(run_id=run.pk, step="create_order", task_id="t-1")

    assert claim.outcome is Outcome.WAIT
    assert claim.not_before == SagaRun.objects.get(pk=run.pk).start_at
    assert 100 < claim.delay <= 120
    step = run.steps.get(name="create_order")
    assert (step.status, step.attempts) == (StepStatus.PENDING, 0)
    assert leases.holder(run.pk, "create_order") is None  # the lease and the attempt count were given back
    assert SagaEvent.objects.filter(run=run).count() == 1  # nothing but SagaStarted


def test_the_reaper_leaves_a_delayed_run_alone_until_its_time_and_the_lease_have_passed() -> None:
    run = PlaceOrder.start(order_payload(), countdown=3600)
    start_at = SagaRun.objects.get(pk=run.pk).start_at
    lease = timedelta(seconds=sagas_settings.LEASE_SECONDS)

    half_an_hour_later = timezone.now() + timedelta(minutes=30)  # no progress for far longer than the lease
    assert str(run.pk) not in recovery.stuck_run_ids(now=half_an_hour_later)
    assert str(run.pk) not in recovery.stuck_run_ids(now=start_at + lease / 2)  # due, but not for the lease yet
    assert str(run.pk) in recovery.stuck_run_ids(now=start_at + lease * 2)  # due, and nothing started it


def test_a_delayed_run_can_be_cancelled_before_its_time() -> None:
    run = PlaceOrder.start(order_payload(), countdown=600)
    sagas.cancel(run.pk, reason="the customer changed their mind", actor="ops")
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    assert set(run.steps.values_list("status", flat=True)) == {StepStatus.SKIPPED}


def test_a_time_already_past_starts_at_once(django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks() as callbacks:
        run = PlaceOrder.start(order_payload(), eta=timezone.now() - timedelta(seconds=5))
    assert SagaRun.objects.get(pk=run.pk).start_at is None
    assert "countdown" not in publishes(callbacks)[0].options


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"countdown": 5, "eta": timezone.now()}, "countdown or eta, not both"),
        ({"countdown": -1}, "countdown must be a number of seconds >= 0"),
        ({"countdown": "soon"}, "countdown must be a number of seconds >= 0"),
        ({"eta": timezone.now().replace(tzinfo=None)}, "eta must be a timezone-aware datetime"),
    ],
)
def test_a_bad_countdown_or_eta_is_refused_and_writes_nothing(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PlaceOrder.start(order_payload(), **options)
    assert not SagaRun.objects.exists()


def test_a_delayed_run_is_not_stale_for_the_diagnosis_before_its_time() -> None:
    run = PlaceOrder.start(order_payload(), countdown=3600)
    later = timezone.now() + timedelta(minutes=30)
    findings = diagnose(SagaRun.objects.get(pk=run.pk), now=later, check_workers=False)
    assert "lease_expired" not in {finding.cause for finding in findings}
    assert not stuck(SagaRun.objects.filter(pk=run.pk), now=later).exists()
