"""The documentation keeps up with the code: every SAGAS setting and every exported name is described, and
every relative link in the README and docs/ leads to a file that exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import sagas
import sagas.testing
from sagas.conf import DEFAULTS

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
LINK = re.compile(r"\]\((?!https?://|#|mailto:)(?P<target>[^)#\s]+)(?:#[^)]*)?\)")


def documented_settings() -> set[str]:
    rows = (DOCS / "configuration.md").read_text().split("## `SAGAS`", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([A-Z_]+)`", rows, re.MULTILINE))


def documented_names() -> set[str]:
    return set(re.findall(r"^### `([A-Za-z_]+)`", (DOCS / "reference.md").read_text(), re.MULTILINE))


def test_every_sagas_setting_is_documented_with_its_default() -> None:
    missing = sorted(set(DEFAULTS) - documented_settings())
    assert not missing, f"SAGAS settings missing from docs/configuration.md: {missing}"
    assert not documented_settings() - set(DEFAULTS), "docs/configuration.md documents settings that do not exist"


@pytest.mark.parametrize("module", [sagas, sagas.testing], ids=lambda m: m.__name__)
def test_every_exported_name_is_in_the_reference(module) -> None:
    missing = sorted(set(module.__all__) - documented_names())
    assert not missing, f"{module.__name__}.__all__ names missing from docs/reference.md: {missing}"


def test_the_reference_describes_nothing_that_is_not_exported() -> None:
    exported = set(sagas.__all__) | set(sagas.testing.__all__)
    assert not documented_names() - exported


@pytest.mark.parametrize("page", [ROOT / "README.md", *sorted(DOCS.glob("*.md"))], ids=lambda p: p.name)
def test_relative_links_lead_somewhere(page: Path) -> None:
    broken = [m["target"] for m in LINK.finditer(page.read_text()) if not (page.parent / m["target"]).exists()]
    assert not broken, f"{page.relative_to(ROOT)} links to missing files: {broken}"


def test_every_page_in_docs_is_reachable_from_the_readme() -> None:
    index = (DOCS / "README.md").read_text()
    assert "docs/README.md" in (ROOT / "README.md").read_text()
    unlisted = [p.name for p in DOCS.glob("*.md") if p.name != "README.md" and f"({p.name})" not in index]
    assert not unlisted, f"docs/README.md does not list: {unlisted}"
