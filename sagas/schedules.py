"""The periodic tasks the sagas app keeps on django-celery-beat's database schedule (the reaper, the purge)."""

from __future__ import annotations

import json


def schedule_every(name: str, *, task: str, seconds: int, description: str) -> None:
    """Install (or update, and enable) the periodic task ``name`` running ``task`` every ``seconds``."""
    # django_celery_beat's models load only once the apps are ready; this module is imported before that.
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    every, _ = IntervalSchedule.objects.get_or_create(every=seconds, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.update_or_create(
        name=name,
        defaults={
            "task": task,
            "interval": every,
            "kwargs": json.dumps({}),
            "enabled": True,
            "description": description,
        },
    )


def unschedule(name: str) -> None:
    """Take the periodic task ``name`` off the schedule, if it is there."""
    from django_celery_beat.models import PeriodicTask

    PeriodicTask.objects.filter(name=name).delete()
