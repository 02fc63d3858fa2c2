"""Chaos soaks: workers killed while sagas run (`python -m bench.chaos`)."""

from bench.chaos.kills import Chaos, Config, Report, main
from bench.chaos.processes import Process, create_database, drop_database

__all__ = ["Chaos", "Config", "Process", "Report", "create_database", "drop_database", "main"]
