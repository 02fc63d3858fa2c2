"""The distributions a user downloads: what the wheel and the sdist built from a copy of this checkout hold, and the
metadata a package index shows (licence, version, dependencies, extras)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

import sagas

ROOT = Path(__file__).resolve().parent.parent
# What a clone holds that the distributions are built from (the rest of the repository is left behind).
SOURCES = ("sagas", "docs", "pyproject.toml", "README.md", "LICENSE", "MANIFEST.in", "CHANGELOG.md", "CONTRIBUTING.md")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / name, source / name)
    (source / "tests").mkdir()  # a stray tests folder next to the package must not end up in the sdist
    (source / "tests" / "test_stray.py").write_text("")
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(source)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (wheel,) = out.glob("django_celery_sagas-*.whl")
    (sdist,) = out.glob("django_celery_sagas-*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


def metadata(wheel: Path) -> tuple[dict[str, list[str]], list[str]]:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (path,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        message = Parser().parsestr(archive.read(path).decode())
    fields: dict[str, list[str]] = {}
    for key, value in message.items():
        fields.setdefault(key, []).append(value)
    return fields, names


def test_the_wheel_carries_the_licence_the_version_and_the_type_marker(built: dict[str, Path]) -> None:
    fields, names = metadata(built["wheel"])
    assert fields["Version"] == [sagas.__version__]
    assert fields["License-Expression"] == ["BSD-3-Clause"]
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "sagas/py.typed" in names
    assert "sagas/templates/admin/sagas/sagarun/run.html" in names  # the console's templates ship too
    assert not [n for n in names if n.startswith("tests/")]
    assert "Framework :: Django :: 5.2" in fields["Classifier"]
    assert "Typing :: Typed" in fields["Classifier"]


def test_the_wheel_declares_what_the_framework_imports_with_capped_majors(built: dict[str, Path]) -> None:
    fields, _ = metadata(built["wheel"])
    requires = {line.split(";")[0].replace(" ", "") for line in fields["Requires-Dist"]}
    # celery with its redis extra: kombu's Redis transport imports what only that extra installs (sagas.E007).
    names = ("Django", "celery[redis]", "redis", "django-celery-results", "django-celery-beat", "prometheus-client")
    for name in names:
        (declared,) = [r for r in requires if r.lower().startswith(name.lower() + "<")]  # a cap first
        assert ">=" in declared, declared  # and a floor
    assert {"postgres", "api", "testing", "tracing"} <= set(fields["Provides-Extra"])
    assert any(line.startswith("psycopg[binary]") and 'extra == "postgres"' in line for line in fields["Requires-Dist"])


def test_the_sdist_ships_the_docs_and_the_changelog_but_no_tests(built: dict[str, Path]) -> None:
    with tarfile.open(built["sdist"]) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"LICENSE", "README.md", "CHANGELOG.md", "CONTRIBUTING.md", "docs/tutorial.md", "sagas/py.typed"} <= names
    assert not [n for n in names if n.startswith("tests/")]
