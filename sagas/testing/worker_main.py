"""The entry point of the workers sagas.testing starts: test databases and planned failures, then Celery's CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from celery.__main__ import main as celery_main
from celery.signals import import_modules, worker_process_init

# {"alias": "name of the test database"}: set by SagaWorker for the worker it starts.
DATABASES_VARIABLE = "SAGAS_TESTING_DATABASES"
# A directory: when set, each pool process writes the spans it makes there (sagas.testing.spans).
SPANS_VARIABLE = "SAGAS_TESTING_SPANS"


def use_test_databases(**kwargs: Any) -> None:
    """Point each database alias at the suite's test database, before Celery's Django fix-up sets Django up (this
    receiver is connected before the app's, so it runs first) and before anything connects."""
    # Settings and connections only (the app's module has set DJANGO_SETTINGS_MODULE by now); nothing has connected.
    from django.conf import settings
    from django.db import connections

    names = json.loads(os.environ.get(DATABASES_VARIABLE) or "{}")
    for alias, name in names.items():
        if alias in settings.DATABASES:
            settings.DATABASES[alias]["NAME"] = name
            connections.settings[alias]["NAME"] = name


def install_planned_failures(**kwargs: Any) -> None:
    """In each pool process: apply the failures run_saga planned before a step's action."""
    # Django is set up by now; this module is loaded before it is, so the runner (which needs the ORM) comes here.
    from sagas import runner
    from sagas.testing import faults

    runner.install_attempt_hook(faults.inject)


def export_spans(**kwargs: Any) -> None:
    """In each pool process, when the test asked for them: its spans go to files the test reads."""
    directory = os.environ.get(SPANS_VARIABLE)
    if directory:
        # Only the tests that trace need the OpenTelemetry SDK.
        from sagas.testing import spans

        spans.install(Path(directory))


def main() -> None:
    import_modules.connect(use_test_databases, weak=False)
    worker_process_init.connect(install_planned_failures, weak=False)
    worker_process_init.connect(export_spans, weak=False)
    celery_main()


if __name__ == "__main__":
    main()
