"""Writes of the notifications service: send a message, idempotent on its key."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction

from participants.notifications.errors import InvalidMessage, InvalidRecipient, RecipientSuppressed
from participants.notifications.models import Notification, Suppression

MAX_SUBJECT_LENGTH = 255


def notification_send(*, recipient: str, subject: str, body: str, idempotency_key: str) -> Notification:
    """Send a message, which this example service does by recording it.

    A repeat with the same ``idempotency_key`` returns the first call's notification and sends
    nothing. Raises ``InvalidRecipient``, ``InvalidMessage`` or ``RecipientSuppressed``, having
    sent nothing.
    """
    with transaction.atomic():
        existing = Notification.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing

        try:
            validate_email(recipient)
        except ValidationError:
            raise InvalidRecipient(f"{recipient!r} is not a valid e-mail address to send to.") from None
        if not subject.strip() or len(subject) > MAX_SUBJECT_LENGTH:
            raise InvalidMessage(
                f"The message to {recipient} needs a subject of 1 to {MAX_SUBJECT_LENGTH} characters, "
                f"not {len(subject)}."
            )
        suppression = Suppression.objects.filter(email__iexact=recipient).first()
        if suppression is not None:
            reason = f" ({suppression.reason})" if suppression.reason else ""
            raise RecipientSuppressed(f"{recipient} is on the suppression list{reason}; no message was sent.")

        try:
            # A savepoint, so losing a race on the key leaves the outer transaction usable.
            with transaction.atomic():
                return Notification.objects.create(
                    recipient=recipient, subject=subject, body=body, idempotency_key=idempotency_key
                )
        except IntegrityError:
            existing = Notification.objects.filter(idempotency_key=idempotency_key).first()
            if existing is None:
                raise
            return existing
