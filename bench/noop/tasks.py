"""The bare Celery tasks the benchmark chains: one that does nothing, one that writes one row."""

from __future__ import annotations

from celery import shared_task

from bench.noop.models import StepRow


@shared_task(name="bench.noop")
def noop(run: str, step: int) -> None:
    return None


@shared_task(name="bench.noop_row")
def noop_row(run: str, step: int) -> None:
    StepRow.objects.create(run=run, step=step)
