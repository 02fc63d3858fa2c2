"""The soak's workers: the project's Celery worker, with each run's planned failures raised before its steps."""

from __future__ import annotations

from typing import Any

from celery.__main__ import main as celery_main
from celery.signals import worker_process_init


def raise_planned(ctx: Any) -> None:
    """Before a step's action: the failure the run's payload plans for this attempt (bench.chaos.workload)."""
    from bench.chaos.workload import planned_failure

    failure = planned_failure(ctx.payload, ctx.step, ctx.attempt)
    if failure is not None:
        raise failure


def install(**kwargs: Any) -> None:
    # In each pool process, once Django is set up: the runner needs the ORM, so it is imported here.
    from sagas import runner

    runner.install_attempt_hook(raise_planned)


def main() -> None:
    worker_process_init.connect(install, weak=False)
    celery_main()


if __name__ == "__main__":
    main()
