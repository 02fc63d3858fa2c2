"""Backdating a run's events, for tests that need a run that stopped moving long ago.

Events are append-only: a database trigger refuses UPDATE. A test that plays "an hour has passed" rewrites
history the way only a superuser could, with triggers off for its own transaction.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import connection, transaction
from django.utils import timezone

from sagas.models import SagaEvent, SagaRun


def make_stale(run: SagaRun, age: timedelta) -> None:
    """Make ``run`` look as if nothing happened to it for ``age``."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL session_replication_role = replica")  # triggers off, this transaction
        SagaRun.objects.filter(pk=run.pk).update(updated_at=timezone.now() - age)
        SagaEvent.objects.filter(run=run).update(created_at=timezone.now() - age)
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL session_replication_role = DEFAULT")
