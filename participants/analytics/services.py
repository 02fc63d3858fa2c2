"""Writes of the analytics service: count a saga's outcome once per request key, and date it in UTC."""

from __future__ import annotations

from datetime import UTC, date, datetime

from django.db import IntegrityError, transaction
from django.db.models import F

from participants.analytics.errors import InvalidOutcome
from participants.analytics.models import CountedMessage, Outcome, SagaOutcomeCount

MAX_SAGA_NAME_LENGTH = 200


def outcome_count(*, saga_name: str, outcome: str, day: date, idempotency_key: str) -> SagaOutcomeCount:
    """Add one to the count of runs of ``saga_name`` that ended with ``outcome`` on ``day``.

    A repeat with the same ``idempotency_key`` returns the count it added to and adds nothing, even
    when it runs at the same time as the first call. Raises ``InvalidOutcome``, counting nothing,
    for a blank saga name or an outcome other than completed, compensated or failed.
    """
    if not saga_name.strip() or len(saga_name) > MAX_SAGA_NAME_LENGTH:
        raise InvalidOutcome(f"The saga name {saga_name!r} must be 1 to {MAX_SAGA_NAME_LENGTH} characters long.")
    if outcome not in Outcome.values:
        raise InvalidOutcome(
            f"{outcome!r} is no outcome of saga {saga_name}; count one of {', '.join(Outcome.values)}."
        )

    with transaction.atomic():
        existing = (
            CountedMessage.objects.select_related("outcome_count").filter(idempotency_key=idempotency_key).first()
        )
        if existing is not None:
            return existing.outcome_count
        try:
            # A savepoint: a concurrent call with this key makes our key insert wait for it, then
            # fail once it commits, and rolling back to here undoes our increment too.
            with transaction.atomic():
                counted = _increment(saga_name=saga_name, outcome=outcome, day=day)
                CountedMessage.objects.create(idempotency_key=idempotency_key, outcome_count=counted)
                return counted
        except IntegrityError:
            existing = (
                CountedMessage.objects.select_related("outcome_count").filter(idempotency_key=idempotency_key).first()
            )
            if existing is None:
                raise
            return existing.outcome_count


def outcome_day(occurred_at: str | datetime) -> date:
    """The UTC day of an ISO 8601 timestamp; one without an offset is taken to be in UTC already."""
    moment = datetime.fromisoformat(occurred_at) if isinstance(occurred_at, str) else occurred_at
    if moment.tzinfo is None:
        return moment.date()
    return moment.astimezone(UTC).date()


def _increment(*, saga_name: str, outcome: str, day: date) -> SagaOutcomeCount:
    counts = SagaOutcomeCount.objects.filter(saga_name=saga_name, outcome=outcome, day=day)
    # UPDATE ... SET count = count + 1 locks the row, so concurrent increments queue instead of
    # overwriting each other.
    if not counts.update(count=F("count") + 1):
        try:
            # A savepoint: a concurrent first count of this day inserts too; ours waits on the
            # unique constraint, fails once it commits, and then increments the row it made.
            with transaction.atomic():
                SagaOutcomeCount.objects.create(saga_name=saga_name, outcome=outcome, day=day, count=1)
        except IntegrityError:
            counts.update(count=F("count") + 1)
    return counts.get()
