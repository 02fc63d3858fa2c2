"""The Celery app's configuration as the framework reads it, however the project configured Celery."""

from __future__ import annotations

from datetime import datetime
from typing import Any


def celery_setting(name: str, default: Any = None) -> Any:
    """The current Celery app's setting ``name`` (its lowercase name, such as ``task_acks_late``), or
    ``default`` when it is unset (None). The project may configure Celery from Django settings with the ``CELERY``
    namespace, from a module, or with ``app.conf.update()``: the app's configuration has the answer in every case
    (Django settings are read through it live, so ``override_settings`` shows)."""
    from celery import current_app

    value = current_app.conf.get(name)
    return default if value is None else value


RABBITMQ_SCHEMES = ("amqp", "amqps", "pyamqp")


def is_rabbitmq(broker_url: str) -> bool:
    """Whether ``broker_url`` names a RabbitMQ broker."""
    return broker_url.split("://", 1)[0] in RABBITMQ_SCHEMES


def on_quorum_queues(app: Any) -> bool:
    """Whether ``app`` publishes to RabbitMQ quorum queues, where Celery delays countdowns in the broker."""
    from celery.utils.quorum_queues import detect_quorum_queues

    return is_rabbitmq(str(app.conf.broker_url or "")) and detect_quorum_queues(app, "amqp")[0]


def broker_delay(app: Any, options: dict[str, Any]) -> dict[str, Any]:
    """The publish ``options`` with a delay Celery can publish: on quorum queues Celery delays a message in the
    broker in whole seconds and refuses to publish one due in less than a second (kombu's calculate_routing_key
    raises on 0), so such a delay becomes one second there. Elsewhere the options are returned as they are."""
    countdown, eta = options.get("countdown"), options.get("eta")
    if not (countdown or eta) or not on_quorum_queues(app):
        return options
    if eta is not None:
        due = datetime.fromisoformat(eta) if isinstance(eta, str) else eta
        countdown = (due - app.now()).total_seconds()
    if countdown is None or not 0 < float(countdown) < 1:
        return options
    return {**{name: value for name, value in options.items() if name != "eta"}, "countdown": 1.0}
