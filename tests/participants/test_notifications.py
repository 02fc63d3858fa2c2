"""Tests of the notifications service."""

from __future__ import annotations

import pytest

from participants.notifications.errors import (
    InvalidMessage,
    InvalidRecipient,
    NotificationError,
    RecipientSuppressed,
)
from participants.notifications.models import Notification, NotificationStatus
from participants.notifications.services import notification_send
from tests.factories import SuppressionFactory


@pytest.mark.django_db
def test_send_records_the_message_as_sent() -> None:
    notification = notification_send(
        recipient="ada@example.com", subject="Order placed", body="Thanks!", idempotency_key="mail-1"
    )

    notification.refresh_from_db()
    assert notification.recipient == "ada@example.com"
    assert notification.subject == "Order placed"
    assert notification.body == "Thanks!"
    assert notification.status == NotificationStatus.SENT


@pytest.mark.django_db
def test_send_with_same_key_twice_sends_once() -> None:
    first = notification_send(recipient="ada@example.com", subject="Hi", body="", idempotency_key="mail-1")
    second = notification_send(recipient="ada@example.com", subject="Hi", body="", idempotency_key="mail-1")

    assert second.pk == first.pk
    assert Notification.objects.count() == 1


@pytest.mark.django_db
def test_send_to_a_suppressed_recipient_raises_and_sends_nothing() -> None:
    SuppressionFactory.create(email="ada@example.com", reason="hard bounce")

    with pytest.raises(
        RecipientSuppressed, match=r"ada@example\.com is on the suppression list \(hard bounce\)"
    ) as excinfo:
        notification_send(recipient="ada@example.com", subject="Hi", body="", idempotency_key="mail-1")

    assert excinfo.value.code == "recipient_suppressed"
    assert Notification.objects.count() == 0


@pytest.mark.django_db
def test_suppression_matches_the_address_without_regard_to_case() -> None:
    SuppressionFactory.create(email="ada@example.com")

    with pytest.raises(RecipientSuppressed):
        notification_send(recipient="Ada@Example.COM", subject="Hi", body="", idempotency_key="mail-1")


@pytest.mark.django_db
def test_send_repeated_after_the_recipient_was_suppressed_returns_the_first_notification() -> None:
    first = notification_send(recipient="ada@example.com", subject="Hi", body="", idempotency_key="mail-1")
    SuppressionFactory.create(email="ada@example.com")

    second = notification_send(recipient="ada@example.com", subject="Hi", body="", idempotency_key="mail-1")

    assert second.pk == first.pk


@pytest.mark.django_db
def test_send_to_an_invalid_address_raises_invalid_recipient() -> None:
    with pytest.raises(InvalidRecipient, match="'nobody' is not a valid e-mail address") as excinfo:
        notification_send(recipient="nobody", subject="Hi", body="", idempotency_key="mail-1")

    assert excinfo.value.code == "invalid_recipient"
    assert Notification.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("subject", ["", "   ", "x" * 256])
def test_send_without_a_fitting_subject_raises_invalid_message(subject: str) -> None:
    with pytest.raises(InvalidMessage, match="needs a subject of 1 to 255 characters") as excinfo:
        notification_send(recipient="ada@example.com", subject=subject, body="", idempotency_key="mail-1")

    assert excinfo.value.code == "invalid_message"
    assert Notification.objects.count() == 0


def test_notification_errors_share_a_base_with_stable_codes() -> None:
    errors = [InvalidRecipient, InvalidMessage, RecipientSuppressed]

    assert all(issubclass(error, NotificationError) for error in errors)
    assert [error.code for error in errors] == [
        "invalid_recipient",
        "invalid_message",
        "recipient_suppressed",
    ]
