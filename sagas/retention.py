"""The scheduled purge of finished runs: its age (``SAGAS["PURGE_AFTER"]``), its beat entry, its pass."""

from __future__ import annotations

import logging
import re
from datetime import timedelta

from django.core.exceptions import ImproperlyConfigured

from sagas import schedules
from sagas.conf import sagas_settings
from sagas.services.purge import MIN_AGE, PurgeReport, purge_runs

logger = logging.getLogger(__name__)

PURGE_TASK = "sagas.purge"
PURGE_SCHEDULE_NAME = "sagas: purge finished runs"
AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
AGE = re.compile(r"(?P<number>\d+)(?P<unit>[smhdw])")


def parse_age(text: str) -> timedelta:
    """An age written as a whole number and a unit: ``3600s``, ``90m``, ``12h``, ``30d``, ``2w``; at most
    ``timedelta.max`` (999999999 days)."""
    found = AGE.fullmatch(text.strip().lower())
    if found is None:
        raise ValueError(f"{_shown(text)} is not an age: write a whole number and a unit, s, m, h, d or w (e.g. 30d).")
    # More digits than the longest age has in seconds is too long in any unit. They are counted before int() reads
    # them: it refuses more than 4,300 digits with a ValueError of its own.
    digits = found["number"].lstrip("0")
    if len(digits) <= len(str(timedelta.max.days * AGE_UNITS["d"])):
        try:
            return timedelta(seconds=int(digits or "0") * AGE_UNITS[found["unit"]])
        except OverflowError:  # over timedelta.max
            pass
    raise ValueError(f"{_shown(text)} is too long an age: the longest is {timedelta.max.days}d.")


def _shown(text: str) -> str:
    """``text`` quoted for a message, cut short: an age given may be thousands of characters long."""
    return repr(text if len(text) <= 30 else text[:29] + "…")


def purge_after() -> timedelta | None:
    """``SAGAS["PURGE_AFTER"]`` as a timedelta: None (the default) leaves the scheduled purge off."""
    value = sagas_settings.PURGE_AFTER
    if value is None:
        return None
    try:
        if isinstance(value, timedelta):
            age = value
        elif isinstance(value, str):
            age = parse_age(value)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            age = timedelta(seconds=value)
        else:
            raise ValueError(f"{value!r} is neither seconds, a timedelta nor an age such as '30d'.")
    except OverflowError:
        raise ImproperlyConfigured(
            f'SAGAS["PURGE_AFTER"] is {value!r} seconds, longer than the longest age ({timedelta.max.days} days).'
        ) from None
    except ValueError as exc:
        raise ImproperlyConfigured(f'SAGAS["PURGE_AFTER"]: {exc}') from exc
    if age < MIN_AGE:
        raise ImproperlyConfigured(
            f'SAGAS["PURGE_AFTER"] is {age}: runs are purged only once finished for at least {MIN_AGE}, since '
            "messages about younger ones may still be in flight. Set a longer age, or None to purge nothing."
        )
    return age


def ensure_purge_schedule() -> None:
    """Put the purge on django-celery-beat's database schedule when ``SAGAS["PURGE_AFTER"]`` is set, every
    ``SAGAS["PURGE_INTERVAL"]`` seconds; take it off when it is not."""
    if purge_after() is None:
        schedules.unschedule(PURGE_SCHEDULE_NAME)
        return
    schedules.schedule_every(
        PURGE_SCHEDULE_NAME,
        task=PURGE_TASK,
        seconds=int(sagas_settings.PURGE_INTERVAL),
        description="Deletes saga runs finished longer than SAGAS['PURGE_AFTER'] ago, with their steps, events, "
        "snapshots, outbox messages and receipts (sagas.retention). Installed by the sagas app; its interval is "
        "SAGAS['PURGE_INTERVAL'].",
    )


def scheduled_purge() -> PurgeReport | None:
    """One pass of the scheduled purge: completed, compensated and cancelled runs older than
    ``SAGAS["PURGE_AFTER"]``, ``SAGAS["PURGE_BATCH"]`` per batch. None when the purge is off (a schedule left
    behind by settings changed without a ``migrate``)."""
    age = purge_after()
    if age is None:
        logger.warning("the scheduled saga purge ran, but SAGAS['PURGE_AFTER'] is not set: nothing purged")
        return None
    return purge_runs(older_than=age, batch_size=int(sagas_settings.PURGE_BATCH))
