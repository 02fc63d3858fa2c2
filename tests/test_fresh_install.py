"""A new user's install: the wheel with the `postgres` extra only, in a new virtual environment, runs a saga that a
real worker completes. Nothing else is installed first, so a dependency the package forgets to declare (kombu's
Redis transport needs `packaging`, which only `celery[redis]` brings) fails here as it would for the user."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
import redis

from tests.test_tutorial import build_wheel, run

pytestmark = pytest.mark.worker

REDIS_URL = "redis://127.0.0.1:6379/15"

FILES = {
    "manage.py": """
        import os
        import sys

        from django.core.management import execute_from_command_line

        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fresh.settings")
        execute_from_command_line(sys.argv)
    """,
    "fresh/__init__.py": """
        from .celery import app as celery_app

        __all__ = ["celery_app"]
    """,
    "fresh/celery.py": """
        import os

        from celery import Celery

        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fresh.settings")
        app = Celery("fresh")
        app.config_from_object("django.conf:settings", namespace="CELERY")
        app.autodiscover_tasks()
    """,
    "fresh/settings.py": """
        import os

        SECRET_KEY = "fresh-install-test"
        USE_TZ = True
        INSTALLED_APPS = [
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "django_celery_results",
            "django_celery_beat",
            "sagas",
            "fresh",
        ]
        DATABASES = {
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": os.environ["FRESH_DB"],
                "USER": "postgres",
                "HOST": "127.0.0.1",
                "PORT": "5432",
            }
        }
        CELERY_BROKER_URL = os.environ["REDIS_URL"]
        REDIS_URL = CELERY_BROKER_URL
        CELERY_RESULT_BACKEND = "django-db"
        CELERY_TASK_DEFAULT_QUEUE = os.environ["FRESH_QUEUE"]
        CELERY_TASK_ACKS_LATE = True
        CELERY_TASK_REJECT_ON_WORKER_LOST = True
        CELERY_WORKER_PREFETCH_MULTIPLIER = 1
        CELERY_TASK_TIME_LIMIT = 60
        CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
        CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
        SAGAS = {"KEY_PREFIX": os.environ["FRESH_QUEUE"]}
    """,
    "fresh/sagas.py": """
        import sagas


        def greet(ctx):
            return {"greeting": f"hello {ctx.payload['name']}"}


        def shout(ctx):
            return {"shouted": ctx.payload["greeting"].upper()}


        class Hello(sagas.Saga):
            name = "fresh.hello"
            steps = [sagas.Step(greet, name="greet"), sagas.Step(shout, name="shout")]
    """,
}

STATUS = (
    "from sagas.models import SagaRun; run = SagaRun.objects.get(pk='{run_id}'); "
    "print(run.status, run.steps.get(name='shout').output)"
)
START = "from fresh.sagas import Hello; print(Hello.start({'name': 'ada'}).pk)"


def test_the_wheel_with_postgres_only_runs_a_saga_on_a_real_worker(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    python = str(venv / "bin" / "python")
    run([python, "-m", "pip", "install", "-q", f"{build_wheel(tmp_path)}[postgres]"], cwd=tmp_path, timeout=600)

    project = tmp_path / "project"
    for name, body in FILES.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(textwrap.dedent(body).lstrip())
    database, queue = f"fresh_{uuid.uuid4().hex[:8]}", f"fresh-{uuid.uuid4().hex[:8]}"
    own = ("DJANGO_", "CELERY_", "SAGAS_", "TEST_", "PROMETHEUS_")  # this suite's settings, not the new project's
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(own) and k not in ("PYTHONPATH", "VIRTUAL_ENV")},
        "PATH": f"{venv / 'bin'}:{os.environ['PATH']}",
        "FRESH_DB": database,
        "FRESH_QUEUE": queue,
        "REDIS_URL": REDIS_URL,
    }
    worker = None
    log = tmp_path / "worker.log"
    try:
        run(["createdb", "-h", "127.0.0.1", "-U", "postgres", database], cwd=project, env=env)
        run([python, "manage.py", "check"], cwd=project, env=env)  # sagas.E007 would stop it here
        run([python, "manage.py", "migrate", "-v", "0"], cwd=project, env=env)
        worker = subprocess.Popen(
            [python, "-m", "celery", "-A", "fresh", "worker", "-P", "prefork", "-c", "1", "-Q", queue, "-l", "INFO"],
            cwd=project,
            env=env,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        run_id = run([python, "manage.py", "shell", "-v", "0", "-c", START], cwd=project, env=env).strip()
        status = ""
        deadline = time.monotonic() + 120  # a generous bound against a hang, not a measure of speed
        while time.monotonic() < deadline and worker.poll() is None:
            shell = [python, "manage.py", "shell", "-v", "0", "-c", STATUS.format(run_id=run_id)]
            status = run(shell, cwd=project, env=env).strip()
            if status.startswith("completed"):
                break
            time.sleep(1)
        assert status == "completed {'shouted': 'HELLO ADA'}", f"{status}\n{log.read_text()[-3000:]}"
    finally:
        if worker is not None:
            worker.terminate()
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        redis.Redis.from_url(REDIS_URL).delete(queue)
        subprocess.run(
            ["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", "--force", database],
            capture_output=True,
            check=False,
        )
