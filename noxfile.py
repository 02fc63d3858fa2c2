"""The test suite against the lowest and the highest versions of the framework's dependencies that pyproject.toml
allows (`make test-matrix`): `lowest` installs each floor, `highest` the newest release under each cap."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
nox.options.sessions = ["lowest", "highest"]
nox.options.reuse_venv = "yes"

# The declared floors, where they install together on this Python: django-celery-beat 2.6 and 2.7 refuse
# Django 5.2, so its floor is 2.8.0. A floor that stops working is raised in pyproject.toml and here.
LOWEST = {
    "django": "Django==5.2",
    "celery": "celery[redis]==5.4.0",
    "redis": "redis==5.0.0",
    "django-celery-results": "django-celery-results==2.5.0",
    "django-celery-beat": "django-celery-beat==2.8.0",
    "prometheus-client": "prometheus-client==0.23.0",
    "psycopg": "psycopg[binary]==3.1.18",
}
# Released with Celery 5.4.0: pip would pick the newest kombu 5, which refuses redis-py before 6.1 while Celery
# 5.4's redis extra wants redis-py before 6.
LOWEST_ALONGSIDE = ["kombu==5.4.0"]
NAME = re.compile(r"^[A-Za-z0-9._-]+")


def _name(requirement: str) -> str:
    found = NAME.match(requirement.strip())
    return found.group(0).lower().replace("_", "-") if found else ""


def declared() -> dict[str, str]:
    """The framework's dependencies and its postgres extra as pyproject.toml declares them, by name."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [*project["dependencies"], *project["optional-dependencies"]["postgres"]]
    return {_name(requirement): requirement for requirement in requirements}


def pinned_tools() -> list[str]:
    """Everything else the suite needs (the example project's and the test tools' pins), without the pins of the
    framework's own dependencies and the libraries Celery brings (kombu, billiard, vine), which pip resolves.
    hiredis (redis-py's optional C parser) only where the newest redis-py can use it."""
    resolved_by_pip = set(declared()) | {"kombu", "billiard", "vine", "celery", "hiredis"}
    lines: list[str] = []
    for path in ("requirements.txt", "requirements-dev.txt"):
        for line in (ROOT / path).read_text().splitlines():
            line = line.split("#")[0].strip()
            if line and not line.startswith("-") and _name(line) not in resolved_by_pip:
                lines.append(line)
    return lines


def _test(session: nox.Session, framework: list[str]) -> None:
    session.install(*framework, *pinned_tools())
    session.run("python", "-m", "pip", "list", "--format=freeze", silent=False)
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(venv_backend="venv")
def lowest(session: nox.Session) -> None:
    """The suite on the lowest versions pyproject.toml allows."""
    assert set(LOWEST) == set(declared()), "LOWEST must name every declared dependency"
    _test(session, [*LOWEST.values(), *LOWEST_ALONGSIDE])


@nox.session(venv_backend="venv")
def highest(session: nox.Session) -> None:
    """The suite on the newest versions pyproject.toml allows."""
    _test(session, [*declared().values(), "celery[redis]", "hiredis"])
