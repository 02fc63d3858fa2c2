"""Queue lengths and deletion on the test broker, Redis or RabbitMQ alike."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A message as the broker stored it: its envelope (headers and properties) and its body, as text."""

    envelope: str
    body: str


def drain(connection: Any, queue: str) -> list[StoredMessage]:
    """Take every message waiting in ``queue`` off it, as the broker stored them (to look for what they carry)."""
    channel = connection.default_channel
    if hasattr(channel, "client"):  # Redis: each list item is a JSON envelope with the body in base64
        raw = channel.client.lrange(queue, 0, -1)
        channel.client.delete(queue)
        return [
            StoredMessage(item.decode(), base64.b64decode(json.loads(item)["body"]).decode()) for item in reversed(raw)
        ]
    found = []
    while (message := channel.basic_get(queue=queue, no_ack=True)) is not None:
        envelope = {"headers": message.headers, "properties": message.properties}
        body = message.body if isinstance(message.body, str) else message.body.decode()
        found.append(StoredMessage(json.dumps(envelope, default=str), body))
    return found
