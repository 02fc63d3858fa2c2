"""App config of the benchmark's no-op app: installs the SQL counters in worker processes when asked."""

from __future__ import annotations

import os

from django.apps import AppConfig


class NoopConfig(AppConfig):
    name = "bench.noop"
    label = "bench_noop"
    verbose_name = "Benchmark no-ops"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        directory = os.environ.get("BENCH_COUNTS_DIR")
        if directory:
            from bench.noop import counting

            counting.install_in_worker(directory, os.environ.get("BENCH_COUNTS_NAME", "worker"))
