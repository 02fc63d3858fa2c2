"""Tests that the participant apps stay independent of each other and touch the saga framework only as designed."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

# Services know neither each other nor the saga framework.
SERVICES = ["orders", "inventory", "payments", "shipping", "notifications", "fraud", "airline", "hotels", "cars"]
# Services that also receive saga messages: only their receivers module may import the framework's public face.
SUBSCRIBERS = ["loyalty", "analytics"]
# Sagas over the services: they call the services' services and errors modules and nothing else of them.
ORCHESTRATORS = ["checkout", "travel"]
PARTICIPANTS = Path(__file__).resolve().parents[2] / "participants"


def imported_names(path: Path) -> set[str]:
    """Every module or name the file imports, in full: ``from a import b`` gives ``a.b``."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def foreign_imports(app: str) -> dict[str, set[str]]:
    """What each file of ``app`` imports of the saga framework or of another participant app, by file."""
    foreign: dict[str, set[str]] = {}
    for path in sorted((PARTICIPANTS / app).rglob("*.py")):
        names = {
            name
            for name in imported_names(path)
            if name.split(".")[0] == "sagas"
            or (name.startswith("participants.") and not name.startswith(f"participants.{app}."))
        }
        if names:
            foreign[str(path.relative_to(PARTICIPANTS / app))] = names
    return foreign


def test_every_participant_app_has_its_boundary_tested() -> None:
    apps = sorted(path.parent.name for path in PARTICIPANTS.glob("*/apps.py"))

    assert sorted(SERVICES + SUBSCRIBERS + ORCHESTRATORS) == apps


@pytest.mark.parametrize("app", SERVICES)
def test_service_imports_neither_other_services_nor_the_saga_framework(app: str) -> None:
    assert foreign_imports(app) == {}


@pytest.mark.parametrize("app", SUBSCRIBERS)
def test_subscriber_imports_no_other_service_and_the_saga_framework_only_in_its_receivers(app: str) -> None:
    assert foreign_imports(app) == {"receivers.py": {"sagas"}}


@pytest.mark.parametrize("app", ORCHESTRATORS)
def test_orchestrator_uses_the_saga_framework_and_only_the_services_and_errors_of_participants(app: str) -> None:
    used = set().union(*foreign_imports(app).values())
    participants = {name for name in used if name.startswith("participants.")}

    assert participants, f"the {app} orchestrator imports no participant"
    assert all(name.rsplit(".", 1)[-1] in {"services", "errors"} for name in participants), participants
    assert used - participants == {"sagas"}
