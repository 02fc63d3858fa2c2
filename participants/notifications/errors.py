"""Business errors of the notifications service, each with a stable ``code`` the caller can keep."""

from __future__ import annotations


class NotificationError(Exception):
    """The notifications service refused the request; sending it again unchanged is refused again."""

    code = "notification_error"


class InvalidRecipient(NotificationError):
    """The recipient is not a valid e-mail address."""

    code = "invalid_recipient"


class RecipientSuppressed(NotificationError):
    """The recipient is on the suppression list and gets no messages."""

    code = "recipient_suppressed"


class InvalidMessage(NotificationError):
    """The subject is blank or longer than 255 characters."""

    code = "invalid_message"
