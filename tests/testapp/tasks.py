"""Plain tasks the suite publishes besides saga tasks."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="tests.delivered", ignore_result=False)
def delivered() -> str:
    """Linked to a message a test delivers: its stored result says the message's task ended in success (saga
    tasks store no result on success, and only Celery 5.7 lets one message ask for it)."""
    return "delivered"
