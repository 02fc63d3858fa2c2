"""The chaos soak, short: PlaceOrder runs while worker processes are killed at random; nothing lost or doubled."""

from __future__ import annotations

from pathlib import Path

from django.db import connection

from bench.chaos import Chaos, Config
from sagaproject.celery import app as celery_app
from tests.faults.conftest import FaultLab


def test_a_short_chaos_soak_loses_nothing_and_doubles_nothing(lab: FaultLab, tmp_path: Path, settings) -> None:
    settings.SAGAS = {**settings.SAGAS, "LEASE_SECONDS": 5, "REAPER_INTERVAL": 2}
    db = connection.settings_dict
    config = Config(runs=150, seconds=75, workers=2, kill_every=4, lease=5, drain_timeout=150, log_dir=tmp_path)
    chaos = Chaos(
        config,
        database_url=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        broker_url=lab.broker.url,
        queue=celery_app.conf.task_default_queue,
        settings_module="tests.settings",
    )
    try:
        report = chaos.run()
    finally:
        chaos.close()
    print(report)

    assert report.runs == config.runs
    assert report.lost == 0, report
    assert report.doubled == 0, report.problems
    assert sum(report.kills.values()) >= 10  # it really was chaotic
    assert report.by_status.get("completed", 0) > 0
    assert report.by_status.get("compensated", 0) > 0
