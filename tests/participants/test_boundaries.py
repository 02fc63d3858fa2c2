"""Tests that the participant services stay independent of each other and of the saga framework."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SERVICES = ["orders", "inventory", "payments", "shipping", "notifications"]
PARTICIPANTS = Path(__file__).resolve().parents[2] / "participants"


def imported_modules(app: str) -> set[str]:
    modules: set[str] = set()
    for path in (PARTICIPANTS / app).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                modules.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                modules.add(node.module)
    return modules


@pytest.mark.parametrize("app", SERVICES)
def test_service_imports_neither_other_services_nor_the_saga_framework(app: str) -> None:
    foreign = {
        module
        for module in imported_modules(app)
        if module.split(".")[0] == "sagas"
        or (module.startswith("participants") and not module.startswith(f"participants.{app}"))
    }

    assert foreign == set()
