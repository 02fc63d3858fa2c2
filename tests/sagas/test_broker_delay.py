"""Delays Celery can publish: on RabbitMQ quorum queues a delay under a second becomes one second."""

from __future__ import annotations

from datetime import timedelta

import pytest
from celery import Celery

from sagas.celeryconf import broker_delay, on_quorum_queues


def app_on(broker_url: str, queue_type: str = "classic") -> Celery:
    app = Celery("delays", set_as_current=False)
    app.conf.update(broker_url=broker_url, task_default_queue="sagas", task_default_queue_type=queue_type)
    return app


QUORUM = app_on("amqp://guest:guest@127.0.0.1:5672//", "quorum")


@pytest.fixture(autouse=True)
def _brokers_as_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    # Celery takes CELERY_BROKER_URL from the environment before its configuration (the test session sets it).
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)


def test_only_rabbitmq_with_quorum_queues_delays_in_the_broker() -> None:
    assert on_quorum_queues(QUORUM)
    assert not on_quorum_queues(app_on("amqp://guest:guest@127.0.0.1:5672//"))
    assert not on_quorum_queues(app_on("redis://127.0.0.1:6379/0", "quorum"))


@pytest.mark.parametrize(
    ("countdown", "published"), [(0.1, 1.0), (0.999, 1.0), (1.0, 1.0), (2.5, 2.5), (0, 0), (-3, -3)]
)
def test_a_countdown_under_a_second_becomes_one_second_on_quorum_queues(countdown: float, published: float) -> None:
    options = broker_delay(QUORUM, {"countdown": countdown, "queue": "sagas"})
    assert options == {"countdown": published, "queue": "sagas"}


def test_an_eta_less_than_a_second_away_becomes_a_one_second_countdown() -> None:
    options = broker_delay(QUORUM, {"eta": QUORUM.now() + timedelta(seconds=0.4)})
    assert options == {"countdown": 1.0}
    later = QUORUM.now() + timedelta(seconds=30)
    assert broker_delay(QUORUM, {"eta": later}) == {"eta": later}
    assert broker_delay(QUORUM, {"eta": later.isoformat()}) == {"eta": later.isoformat()}


def test_other_brokers_publish_the_delay_as_given() -> None:
    for app in (app_on("redis://127.0.0.1:6379/0"), app_on("amqp://guest:guest@127.0.0.1:5672//")):
        assert broker_delay(app, {"countdown": 0.2}) == {"countdown": 0.2}
