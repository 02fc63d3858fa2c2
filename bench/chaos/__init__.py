"""Chaos soaks: worker kills (`python -m bench.chaos`), and server and network faults too (`--infra`)."""

from bench.chaos.kills import Chaos, Config, Report, main
from bench.chaos.processes import Process, create_database, drop_database

__all__ = ["Chaos", "Config", "Process", "Report", "create_database", "drop_database", "main"]
