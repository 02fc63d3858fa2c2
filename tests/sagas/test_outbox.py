"""The outbox: lifecycle messages written with the change they announce, relayed after commit or by the reaper."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

import sagas
from sagas import choreography, outbox, recovery
from sagas.models import SagaOutbox, SagaReceipt
from tests.testapp.sagas import Diamond, Gated

pytestmark = pytest.mark.django_db


def test_a_message_is_written_only_when_a_receiver_listens(django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks():
        diamond = Diamond.start({})
        gated = Gated.start({})

    assert list(SagaOutbox.objects.filter(run=diamond).values_list("topic", flat=True)) == ["tests.diamond.started"]
    assert not SagaOutbox.objects.filter(run=gated).exists()  # nobody listens to tests.gated.started
    message = SagaOutbox.objects.get(run=diamond).message
    assert message["run_id"] == str(diamond.pk)
    assert message["correlation_id"] == diamond.correlation_id
    assert (message["status"], message["step"], message["event_seq"]) == ("pending", "", 1)


def test_a_rolled_back_change_announces_nothing(django_capture_on_commit_callbacks) -> None:
    def start_then_fail() -> None:
        with transaction.atomic():
            Diamond.start({})
            raise RuntimeError("the caller's transaction fails")

    with django_capture_on_commit_callbacks() as callbacks, pytest.raises(RuntimeError):
        start_then_fail()

    assert not SagaOutbox.objects.exists()
    assert callbacks == []


def test_after_commit_the_message_is_published_and_marked(django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        run = Diamond.start({})

    message = SagaOutbox.objects.get(run=run)
    assert message.published_at is not None
    assert message.attempts == 0


def test_the_reaper_relays_a_message_a_crash_left_unpublished(django_capture_on_commit_callbacks, settings) -> None:
    with django_capture_on_commit_callbacks():  # committed, but the process died before the relay ran
        run = Diamond.start({})
    SagaOutbox.objects.filter(run=run).update(created_at=timezone.now() - timedelta(minutes=5))

    recovery.reap()

    assert SagaOutbox.objects.get(run=run).published_at is not None


def test_a_fresh_unpublished_message_is_left_to_its_own_relay(django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks():
        run = Diamond.start({})

    recovery.reap()

    assert SagaOutbox.objects.get(run=run).published_at is None


@pytest.mark.parametrize(
    ("pattern", "kwargs", "message"),
    [
        ("", {}, "needs topic patterns"),
        ("a.b", {"retry": sagas.RetryPolicy(max_attempts=0)}, "retry must be a valid sagas.RetryPolicy"),
        ("a.b", {"name": "has spaces"}, "use letters, digits"),
    ],
)
def test_bad_receivers_are_refused_with_what_to_fix(pattern: str, kwargs: dict, message: str) -> None:
    with pytest.raises(sagas.InvalidDefinition, match=message):
        sagas.on(pattern, **kwargs)(lambda message: None)


def test_receivers_match_topics_by_pattern_and_step_messages_only_patterns_that_name_steps() -> None:
    step_receivers = {r.name for r in choreography.receivers_of("tests.diamond.step.north.completed", step=True)}
    assert "tests.diamond_ledger" in step_receivers  # its patterns include tests.diamond.step.*
    assert "tests.transfer_ledger" not in step_receivers
    assert "participants.analytics.receivers.count_completed" not in step_receivers  # "*.completed": runs only
    assert {r.name for r in choreography.receivers_of("orders.place_order.completed")} >= {
        "participants.loyalty.receivers.award_points",
        "participants.analytics.receivers.count_completed",
    }


def test_a_step_nobody_listens_to_writes_no_message(django_capture_on_commit_callbacks) -> None:
    from sagas import runner
    from tests.testapp.sagas import Flaky

    with django_capture_on_commit_callbacks():
        run = Flaky.start({})
        runner.execute_step(run_id=str(run.pk), step="first", task_id=f"{run.pk}:first:1")

    assert not SagaOutbox.objects.filter(run=run).exists()  # analytics' "*.completed" is about runs


def _published_a_while_ago(run, seconds: float = 3600) -> SagaOutbox:
    SagaOutbox.objects.filter(run=run).update(published_at=timezone.now() - timedelta(seconds=seconds))
    return SagaOutbox.objects.get(run=run)


def _receipts(message: SagaOutbox, names: list[str]) -> None:
    for name in names:
        SagaReceipt.objects.create(receiver=name, message_id=message.pk)


def test_a_published_message_records_the_receivers_it_went_to(django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        run = Diamond.start({})

    message = SagaOutbox.objects.get(run=run)
    assert message.receivers == [r.name for r in choreography.receivers_of("tests.diamond.started")]
    assert message.receivers
    assert message.settled_at is None
    assert message.redeliveries == 0


def test_the_reaper_publishes_again_a_message_a_receiver_has_no_receipt_for(django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        run = Diamond.start({})
    message = _published_a_while_ago(run)
    first, *others = message.receivers
    _receipts(message, others)  # every receiver but the first got it

    recovery.reap()

    again = SagaOutbox.objects.get(pk=message.pk)
    assert again.redeliveries == 1
    assert again.published_at > message.published_at  # its grace starts again
    assert again.settled_at is None

    _receipts(message, [first])
    _published_a_while_ago(run)
    recovery.reap()

    settled = SagaOutbox.objects.get(pk=message.pk)
    assert settled.settled_at is not None
    assert settled.redeliveries == 1


def test_a_message_every_receiver_got_is_settled_without_a_publish(django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        run = Diamond.start({})
    message = _published_a_while_ago(run)
    _receipts(message, message.receivers)

    assert outbox.redeliver_lost() == 0

    settled = SagaOutbox.objects.get(pk=message.pk)
    assert settled.settled_at is not None
    assert settled.redeliveries == 0


def test_a_message_within_its_grace_is_left_alone(django_capture_on_commit_callbacks, settings) -> None:
    settings.SAGAS = {**settings.SAGAS, "OUTBOX_REDELIVER_AFTER": 600}
    with django_capture_on_commit_callbacks(execute=True):
        run = Diamond.start({})
    _published_a_while_ago(run, seconds=300)

    assert outbox.redeliver_lost() == 0
    message = SagaOutbox.objects.get(run=run)
    assert (message.redeliveries, message.settled_at) == (0, None)


def test_redeliveries_are_bounded_and_the_last_one_is_logged(
    django_capture_on_commit_callbacks, settings, caplog
) -> None:
    settings.SAGAS = {**settings.SAGAS, "OUTBOX_REDELIVER_MAX": 2}
    with django_capture_on_commit_callbacks(execute=True):
        run = Diamond.start({})
    for _ in range(2):
        _published_a_while_ago(run)
        assert outbox.redeliver_lost() == 1

    _published_a_while_ago(run)
    assert outbox.redeliver_lost() == 0

    message = SagaOutbox.objects.get(run=run)
    assert message.redeliveries == 2
    assert message.settled_at is not None
    assert "after 2 redeliveries; not publishing it again" in caplog.text


def test_a_receiver_declared_after_the_publish_is_not_sent_the_old_message(django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        run = Diamond.start({})
    first, *_ = SagaOutbox.objects.get(run=run).receivers
    SagaOutbox.objects.filter(run=run).update(receivers=[first])  # the others came with a later deploy
    message = _published_a_while_ago(run)
    _receipts(message, [first])

    assert outbox.redeliver_lost() == 0
    assert SagaOutbox.objects.get(pk=message.pk).settled_at is not None


def test_a_delivery_whose_last_copy_went_with_redis_data_is_published_again_past_the_bound(
    django_capture_on_commit_callbacks, settings
) -> None:
    settings.SAGAS = {**settings.SAGAS, "OUTBOX_REDELIVER_MAX": 1}
    with django_capture_on_commit_callbacks(execute=True):
        run = Diamond.start({})
    _published_a_while_ago(run)
    assert outbox.redeliver_lost() == 1  # its one redelivery
    message = _published_a_while_ago(run, seconds=3 * 3600)

    # Redis lost its data two hours ago, after that copy was published: the copy is gone, not undelivered.
    forgotten_at = timezone.now() - timedelta(seconds=2 * 3600)
    with django_capture_on_commit_callbacks(execute=True):
        assert outbox.redeliver_lost(forgotten_at=forgotten_at) == 1

    again = SagaOutbox.objects.get(pk=message.pk)
    assert (again.redeliveries, again.settled_at) == (2, None)
    _published_a_while_ago(run, seconds=3600)  # this copy was published after the loss: the bound holds again
    assert outbox.redeliver_lost(forgotten_at=forgotten_at) == 0
    assert SagaOutbox.objects.get(pk=message.pk).settled_at is not None
