"""Tests of the analytics service."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import TYPE_CHECKING

import pytest

from participants.analytics.errors import AnalyticsError, InvalidOutcome
from participants.analytics.models import CountedMessage, Outcome, SagaOutcomeCount
from participants.analytics.services import outcome_count, outcome_day
from tests.factories import CountedMessageFactory

if TYPE_CHECKING:
    from tests.conftest import RunConcurrently

DAY = date(2026, 3, 1)
SAGA = "orders.place_order"


def count_of(saga_name: str = SAGA, outcome: str = Outcome.COMPLETED, day: date = DAY) -> int:
    row = SagaOutcomeCount.objects.filter(saga_name=saga_name, outcome=outcome, day=day).first()
    return 0 if row is None else row.count


def conserved() -> bool:
    """Every count equals the number of requests counted into it."""
    return all(row.count == row.messages.count() for row in SagaOutcomeCount.objects.all())


@pytest.mark.django_db
def test_first_count_of_a_day_starts_at_one() -> None:
    row = outcome_count(saga_name=SAGA, outcome=Outcome.COMPLETED, day=DAY, idempotency_key="m-1")

    row.refresh_from_db()
    assert (row.saga_name, row.outcome, row.day, row.count) == (SAGA, "completed", DAY, 1)
    assert CountedMessage.objects.get().outcome_count == row


@pytest.mark.django_db
def test_counts_add_up_per_saga_outcome_and_day() -> None:
    outcome_count(saga_name=SAGA, outcome="completed", day=DAY, idempotency_key="m-1")
    outcome_count(saga_name=SAGA, outcome="completed", day=DAY, idempotency_key="m-2")
    outcome_count(saga_name=SAGA, outcome="compensated", day=DAY, idempotency_key="m-3")
    outcome_count(saga_name=SAGA, outcome="failed", day=DAY, idempotency_key="m-4")
    outcome_count(saga_name=SAGA, outcome="completed", day=DAY + timedelta(days=1), idempotency_key="m-5")
    outcome_count(saga_name="travel.book_trip", outcome="completed", day=DAY, idempotency_key="m-6")

    assert count_of() == 2
    assert count_of(outcome="compensated") == 1
    assert count_of(outcome="failed") == 1
    assert count_of(day=DAY + timedelta(days=1)) == 1
    assert count_of(saga_name="travel.book_trip") == 1
    assert SagaOutcomeCount.objects.count() == 5
    assert conserved()


@pytest.mark.django_db
def test_count_with_same_key_twice_counts_once() -> None:
    first = outcome_count(saga_name=SAGA, outcome="completed", day=DAY, idempotency_key="m-1")
    second = outcome_count(saga_name=SAGA, outcome="completed", day=DAY, idempotency_key="m-1")

    assert second.pk == first.pk
    assert second.count == 1
    assert count_of() == 1
    assert CountedMessage.objects.count() == 1


@pytest.mark.django_db
def test_count_repeated_with_other_details_returns_the_first_count_and_counts_nothing() -> None:
    first = outcome_count(saga_name=SAGA, outcome="completed", day=DAY, idempotency_key="m-1")

    second = outcome_count(saga_name=SAGA, outcome="failed", day=DAY, idempotency_key="m-1")

    assert second.pk == first.pk
    assert count_of(outcome="failed") == 0
    assert count_of() == 1


@pytest.mark.django_db
def test_keys_already_counted_before_do_not_count_again() -> None:
    counted = CountedMessageFactory.create(idempotency_key="m-1", outcome_count__count=1)

    row = outcome_count(
        saga_name=counted.outcome_count.saga_name,
        outcome=counted.outcome_count.outcome,
        day=counted.outcome_count.day,
        idempotency_key="m-1",
    )

    assert (row.pk, row.count) == (counted.outcome_count.pk, 1)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("saga_name", "outcome", "message"),
    [
        (SAGA, "started", "'started' is no outcome of saga orders.place_order"),
        (SAGA, "timeout", "count one of completed, compensated, failed"),
        (SAGA, "", "'' is no outcome"),
        ("", "completed", "saga name '' must be 1 to 200 characters"),
        ("   ", "completed", "saga name '   ' must be 1 to 200 characters"),
        ("x" * 201, "completed", "must be 1 to 200 characters"),
    ],
)
def test_invalid_outcome_is_refused_and_counts_nothing(saga_name: str, outcome: str, message: str) -> None:
    with pytest.raises(InvalidOutcome, match=message) as excinfo:
        outcome_count(saga_name=saga_name, outcome=outcome, day=DAY, idempotency_key="m-1")

    assert excinfo.value.code == "invalid_outcome"
    assert SagaOutcomeCount.objects.count() == 0
    assert CountedMessage.objects.count() == 0


def test_analytics_errors_share_a_base_with_stable_codes() -> None:
    assert issubclass(InvalidOutcome, AnalyticsError)
    assert InvalidOutcome.code == "invalid_outcome"


@pytest.mark.parametrize(
    ("occurred_at", "day"),
    [
        ("2026-03-01T12:00:00+00:00", date(2026, 3, 1)),
        ("2026-03-01T23:59:59.999999+00:00", date(2026, 3, 1)),
        ("2026-03-01T23:30:00Z", date(2026, 3, 1)),
        # Late evening west of Greenwich is already the next day in UTC, and early morning east of it the day before.
        ("2026-03-01T23:30:00-02:00", date(2026, 3, 2)),
        ("2026-03-01T00:30:00+02:00", date(2026, 2, 28)),
        ("2026-03-01T10:00:00", date(2026, 3, 1)),
        (datetime(2026, 3, 1, 1, 0, tzinfo=timezone(timedelta(hours=5))), date(2026, 2, 28)),
        (datetime(2026, 3, 1, 23, 0, tzinfo=UTC), date(2026, 3, 1)),
    ],
)
def test_outcome_day_is_the_utc_day_of_the_timestamp(occurred_at: str | datetime, day: date) -> None:
    assert outcome_day(occurred_at) == day


@pytest.mark.django_db(transaction=True)
def test_concurrent_first_counts_of_a_day_count_every_request(run_concurrently: RunConcurrently) -> None:
    results = run_concurrently(
        *(
            lambda n=n: outcome_count(saga_name=SAGA, outcome="completed", day=DAY, idempotency_key=f"m-{n}")
            for n in range(8)
        )
    )

    assert all(isinstance(result, SagaOutcomeCount) for result in results), results
    assert SagaOutcomeCount.objects.count() == 1
    assert count_of() == 8
    assert conserved()


@pytest.mark.django_db(transaction=True)
def test_concurrent_counts_with_the_same_key_count_once(run_concurrently: RunConcurrently) -> None:
    results = run_concurrently(
        *(lambda: outcome_count(saga_name=SAGA, outcome="completed", day=DAY, idempotency_key="same") for _ in range(6))
    )

    assert all(isinstance(result, SagaOutcomeCount) for result in results), results
    assert len({result.pk for result in results}) == 1
    assert count_of() == 1
    assert CountedMessage.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_redeliveries_of_several_messages_count_each_once(run_concurrently: RunConcurrently) -> None:
    outcome_count(saga_name=SAGA, outcome="completed", day=DAY, idempotency_key="m-0")

    results = run_concurrently(
        *(
            lambda n=n: outcome_count(saga_name=SAGA, outcome="completed", day=DAY, idempotency_key=f"m-{n % 4}")
            for n in range(12)
        )
    )

    assert all(isinstance(result, SagaOutcomeCount) for result in results), results
    assert count_of() == 4
    assert conserved()


@pytest.mark.django_db(transaction=True)
def test_concurrent_counts_with_the_same_key_for_two_outcomes_count_once(run_concurrently: RunConcurrently) -> None:
    results = run_concurrently(
        *(
            lambda outcome=outcome: outcome_count(saga_name=SAGA, outcome=outcome, day=DAY, idempotency_key="same")
            for outcome in ["completed", "failed"] * 3
        )
    )

    assert all(isinstance(result, SagaOutcomeCount) for result in results), results
    assert len({result.pk for result in results}) == 1
    assert count_of() + count_of(outcome="failed") == 1
    assert conserved()
