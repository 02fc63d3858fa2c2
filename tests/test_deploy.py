"""The production defaults fail closed: settings without an environment, the compose file, Flower's guard and
`manage.py check --deploy` with the production environment docs/deployment.md documents."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
# What the "Production settings" section of docs/deployment.md tells an operator to set.
PRODUCTION = {
    "DJANGO_SECRET_KEY": "a-production-key-of-fifty-or-more-characters-with-variety-0123456789",
    "DJANGO_ALLOWED_HOSTS": "sagas.example.com",
    "DJANGO_BEHIND_TLS_PROXY": "1",
}
# Explained in docs/deployment.md: HSTS and the HTTPS redirect belong to the TLS proxy in front
# (DJANGO_HSTS_SECONDS and DJANGO_SSL_REDIRECT move them into Django).
EXPLAINED_WARNINGS = {"security.W004", "security.W008"}


def run_django(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Python with the project's settings in a clean environment: only PATH and what ``env`` adds."""
    clean = {"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "sagaproject.settings", **env}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=120, check=False
    )


def test_without_an_environment_the_settings_refuse_to_start() -> None:
    started = run_django("import django; django.setup()", {})
    assert started.returncode != 0
    assert "Set the environment variable DJANGO_SECRET_KEY" in started.stderr


def test_with_a_key_the_settings_are_production_ones() -> None:
    started = run_django(
        "import django; django.setup(); from django.conf import settings; print(settings.DEBUG)",
        {"DJANGO_SECRET_KEY": PRODUCTION["DJANGO_SECRET_KEY"]},
    )
    assert started.returncode == 0, started.stderr
    assert started.stdout.strip() == "False"


def test_check_deploy_warns_only_about_what_the_deployment_page_explains() -> None:
    checked = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "sagaproject.settings", **PRODUCTION},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = checked.stdout + checked.stderr
    assert checked.returncode == 0, output
    warned = {word.strip("():") for word in output.split() if word.startswith("(") and "." in word}
    assert warned <= EXPLAINED_WARNINGS, output
    page = (ROOT / "docs" / "deployment.md").read_text()
    production = page.split("## Production settings", 1)[1].split("\n## ", 1)[0]
    for warning in EXPLAINED_WARNINGS:
        assert warning in production


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_ships_no_secret_key(compose: dict) -> None:
    key = compose["x-app-environment"]["DJANGO_SECRET_KEY"]
    assert key.startswith("${DJANGO_SECRET_KEY:?")  # required: compose stops with this message when unset


@pytest.mark.parametrize(
    ("address", "auth", "starts"),
    [
        ("127.0.0.1", "", True),
        ("0.0.0.0", "", False),
        ("0.0.0.0", "ops:s3cret", True),
        ("192.0.2.10", "", False),
    ],
)
def test_flower_refuses_to_be_published_beyond_loopback_without_a_password(
    compose: dict, address: str, auth: str, starts: bool
) -> None:
    flower = compose["services"]["flower"]
    assert flower["environment"]["FLOWER_BASIC_AUTH"] == "${FLOWER_BASIC_AUTH:-}"
    shell, flag, script = flower["command"]
    # Compose turns $$ into $; the script's last line would start Flower: here it only says it would.
    script = script.replace("$$", "$").replace("exec celery -A sagaproject flower --port=5555", "echo starting")
    ran = subprocess.run(
        [shell, flag, script],
        env={"PATH": os.environ["PATH"], "PUBLISH_ADDRESS": address, "FLOWER_BASIC_AUTH": auth},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (ran.returncode == 0) is starts, ran.stderr
    assert ("starting" in ran.stdout) is starts
    if not starts:
        assert "without FLOWER_BASIC_AUTH" in ran.stderr


@pytest.mark.django_db
def test_the_demo_resets_no_admin_password_in_a_database_that_is_not_its_own() -> None:
    from django.contrib.auth import get_user_model

    from sagaproject import demo_batch

    assert not demo_batch.is_demo_database()  # the suite's PostgreSQL database
    admin = get_user_model().objects.create_user("admin", password="the-real-one", is_staff=False)
    with pytest.raises(demo_batch.ForeignDatabase, match="does not reset its password"):
        demo_batch.ensure_admin()
    admin.refresh_from_db()
    assert admin.check_password("the-real-one")
    assert not admin.is_superuser
