"""Receivers of the analytics service: count every saga run that ended, by saga, outcome and UTC day."""

from __future__ import annotations

import sagas
from participants.analytics import services as analytics


def _count(message: sagas.SagaMessage) -> None:
    analytics.outcome_count(
        saga_name=message.saga_name,
        outcome=message.topic.rsplit(".", 1)[-1],
        day=analytics.outcome_day(message.occurred_at),
        idempotency_key=message.id,
    )


@sagas.on("*.completed")
def count_completed(message: sagas.SagaMessage) -> None:
    _count(message)


@sagas.on("*.compensated")
def count_compensated(message: sagas.SagaMessage) -> None:
    _count(message)


@sagas.on("*.failed")
def count_failed(message: sagas.SagaMessage) -> None:
    _count(message)
