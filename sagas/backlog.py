"""How long the saga queue is behind: the age of the oldest message waiting in it, for the reaper.

A run whose step message waits behind a long queue makes no progress for as long as the queue is behind, and
would look lost to a reaper that only knows the lease: publishing its step again then makes the queue longer
still. Every saga message carries the time it was published (a header); the reaper reads the oldest waiting one
and counts a run stuck only once it made no progress for the lease plus that delay.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from celery import current_app

from sagas.breakers import redis_client
from sagas.conf import sagas_settings

logger = logging.getLogger(__name__)

SENT_HEADER = "sagas_sent"  # epoch seconds at publish
# The oldest few messages are read: a message published by something else (without the header) may lead.
PEEK = 5


def sent_now() -> dict[str, Any]:
    """The header a saga message is published with."""
    return {SENT_HEADER: round(time.time(), 3)}


def queue_delay() -> float:
    """Seconds the oldest saga message waiting in its queue has waited; 0 when the queue is empty, its messages
    carry no time, or the broker cannot be read this way (RabbitMQ gives no peek: its queue is not measured)."""
    url = str(current_app.conf.broker_url or "")
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return 0.0
    queue = sagas_settings.QUEUE or current_app.conf.task_default_queue
    try:
        # kombu's Redis transport pushes on the left and pops on the right: the oldest messages are last.
        oldest = redis_client(url).lrange(queue, -PEEK, -1)
    except Exception:  # the broker is away: the lease alone decides, as without a backlog
        logger.debug("could not read the length of queue %s", queue, exc_info=True)
        return 0.0
    sent = [_sent(raw) for raw in oldest]
    known = [moment for moment in sent if moment is not None]
    return max(0.0, time.time() - min(known)) if known else 0.0


def _sent(raw: Any) -> float | None:
    try:
        value = json.loads(raw).get("headers", {}).get(SENT_HEADER)
    except (ValueError, AttributeError, TypeError):
        return None
    return float(value) if isinstance(value, (int, float)) else None
