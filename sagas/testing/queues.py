"""Queue lengths and deletion on the test broker, Redis or RabbitMQ alike."""

from __future__ import annotations

from typing import Any


def waiting(connection: Any, queue: str) -> int:
    """Messages waiting in ``queue`` (published, not yet delivered to a worker)."""
    channel = connection.default_channel
    if hasattr(channel, "client"):  # Redis: a queue is a list
        return int(channel.client.llen(queue))
    try:
        return int(channel.queue_declare(queue=queue, passive=True).message_count)
    except connection.channel_errors:  # never declared (NOT_FOUND): nobody published to it
        connection.default_channel  # noqa: B018 - the failed declare closed the channel; this opens another
        return 0


def delete(connection: Any, *queues: str) -> None:
    """Drop ``queues`` and whatever waits in them."""
    channel = connection.default_channel
    if hasattr(channel, "client"):
        if queues:
            channel.client.delete(*queues)
        return
    for queue in queues:
        channel.queue_delete(queue=queue)
