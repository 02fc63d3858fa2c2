"""docs/tutorial.md followed literally in a new Django project in a temporary directory: its files written as
shown, its commands run, and its tests passing on a real worker started by sagas.testing's fixture."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TUTORIAL = ROOT / "docs" / "tutorial.md"
BLOCK = re.compile(r"<!-- (file|append): (?P<path>\S+) -->\n```\w*\n(?P<body>.*?)```", re.DOTALL)
CONSOLE = re.compile(r"```console\n(?P<body>.*?)```", re.DOTALL)
LONG_RUNNING = ("celery -A shopsite worker", "celery -A shopsite beat", "python manage.py runserver")
INSTALL = re.compile(r'pip install "django-celery-sagas\[(?P<extras>[a-z,]+)\]"')

pytestmark = pytest.mark.worker  # the tutorial's own tests start a worker


def tutorial_files() -> list[tuple[str, str, str]]:
    return [(m.group(1), m.group("path"), m.group("body")) for m in BLOCK.finditer(TUTORIAL.read_text())]


def tutorial_commands() -> list[str]:
    commands = []
    for block in CONSOLE.finditer(TUTORIAL.read_text()):
        commands += [line[2:].split("  #")[0].strip() for line in block.group("body").splitlines() if line[:2] == "$ "]
    return commands


def test_the_tutorial_has_what_this_test_follows() -> None:
    assert [path for _, path, _ in tutorial_files()] == [
        "shopsite/celery.py", "shopsite/__init__.py", "shopsite/settings.py", "shop/models.py", "shop/sagas.py",
        "pyproject.toml", "conftest.py", "shop/tests.py",
    ]  # fmt: skip
    assert tutorial_commands()[0] == "django-admin startproject shopsite ."
    commands = tutorial_commands()
    assert any(c.startswith("DJANGO_SUPERUSER_PASSWORD=") and "createsuperuser --noinput" in c for c in commands)
    assert all(any(c.startswith(process) for c in commands) for process in LONG_RUNNING)
    assert any(c.startswith("python manage.py shell -c") and ".start(" in c for c in commands)
    # The install line names the extras a reader needs: the database driver and the test plugin's dependencies.
    (install,) = [c for c in tutorial_commands() if c.startswith("pip install")]
    assert (found := INSTALL.fullmatch(install)) is not None, install
    assert set(found["extras"].split(",")) == {"postgres", "testing"}


def build_wheel(tmp_path: Path) -> Path:
    """The framework as a user installs it: a wheel built from a copy of the package (not this checkout)."""
    source = tmp_path / "source"
    source.mkdir()
    shutil.copytree(ROOT / "sagas", source / "sagas", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE", "MANIFEST.in"):
        shutil.copy(ROOT / name, source / name)
    wheels = tmp_path / "wheels"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(source)], cwd=tmp_path)
    (wheel,) = wheels.glob("django_celery_sagas-*.whl")
    return wheel


def run(argv: list[str] | str, *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    done = subprocess.run(
        argv, cwd=cwd, env=env, shell=isinstance(argv, str), capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{argv} failed ({done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done.stdout


def users_environment(tmp_path: Path) -> Path:
    """A new virtual environment as the tutorial's reader has it: a project that runs Celery with Redis, so Django,
    Celery, kombu and redis-py at the versions this suite runs (a working set: pip alone could pair an old Celery's
    redis-py with a kombu that refuses it), nothing else. Returns its bin directory."""
    import celery
    import django
    import kombu
    import redis

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", f"Django=={django.__version__}",
         f"celery[redis]=={celery.__version__}", f"kombu=={kombu.__version__}", f"redis=={redis.__version__}"],
        cwd=tmp_path)  # fmt: skip
    return venv / "bin"


def test_the_tutorial_gives_a_saga_that_completes_on_a_real_worker(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    bin_dir = users_environment(tmp_path)
    database = f"tutorial_{uuid.uuid4().hex[:8]}"
    queue = f"tutorial-{uuid.uuid4().hex[:8]}"
    own = ("DJANGO_", "CELERY_", "SAGAS_", "TEST_", "PROMETHEUS_")  # this suite's settings, not the new project's
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(own) and k not in ("PYTHONPATH", "VIRTUAL_ENV")},
        "PATH": f"{bin_dir}:{os.environ['PATH']}",  # the reader's environment, not this suite's
        "SHOP_DB": database,
        "SHOP_QUEUE": queue,
        "REDIS_URL": "redis://127.0.0.1:6379/15",
    }
    files = tutorial_files()
    written = 0
    output = ""
    try:
        for command in tutorial_commands():
            if installs := INSTALL.fullmatch(command):
                # The wheel in place of the package index's copy, with the extras the tutorial names and every
                # dependency resolved by pip from the package's metadata.
                wheel = build_wheel(tmp_path)
                run([str(bin_dir / "python"), "-m", "pip", "install", "-q", f"{wheel}[{installs['extras']}]"],
                    cwd=project, env=env)  # fmt: skip
            elif command.startswith("createdb"):
                run(command.replace(" shop", f" {database}"), cwd=project, env=env)
            elif command.startswith(LONG_RUNNING):
                continue  # a worker, beat, the web server: the tests below start their own worker (the fixture)
            elif command.startswith("python manage.py shell"):
                started = run(command, cwd=project, env=env)  # no worker consumes it here: it stays pending
                assert re.search(r"^[0-9a-f-]{36} pending$", started, re.MULTILINE), started
            elif command.startswith("pytest "):
                # The tutorial's tests: their worker is started by sagas.testing's fixture.
                pytest_command = command.replace("pytest ", "python -m pytest -p no:cacheprovider -q ")
                output = run(pytest_command, cwd=project, env=env)
            else:
                run(command, cwd=project, env=env)
            if command.startswith("python manage.py startapp"):
                # The tutorial's files, once the project and app they go into exist.
                for kind, path, body in files:
                    target = project / path
                    if kind == "append":
                        target.write_text(target.read_text() + "\n" + body)
                    else:
                        target.write_text(body)
                    written += 1
        assert written == len(files)
        assert "4 passed" in output, output
    finally:
        import redis

        redis.Redis.from_url(env["REDIS_URL"]).delete(queue)  # the shell's run's first step, never consumed
        subprocess.run(
            ["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", "--force", database],
            capture_output=True,
            check=False,
        )
