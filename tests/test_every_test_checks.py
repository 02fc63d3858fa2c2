"""Every test function checks something: an assert, pytest.raises (or warns), Playwright's expect, or a call to a
helper that checks. A test that checks nothing passes whatever the code does; a new one fails this check. A test that
checks only by raising by hand (an AssertionError of its own, pytest.fail) is listed below, with why."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Where the helpers that tests call live: the suite itself and the toolkit it shares with projects.
HELPER_TREES = (ROOT / "tests", ROOT / "sagas" / "testing")

# The tests that check only by raising by hand, each with why that is the clearer way.
RAISE_BY_HAND = {
    "tests/test_layers.py::test_every_module_is_in_a_layer": "layer_of raises, naming the module and what to do",
    "tests/test_migrations.py::test_no_model_change_is_missing_a_migration": "makemigrations --check exits; "
    "pytest.fail says what it found",
}

# Calls that check: pytest's context managers, and Playwright's expect (its assertions wait, then fail).
CHECKING_CALLS = {"raises", "warns", "deprecated_call", "expect"}
FAILING_CALLS = {"fail"}  # pytest.fail


def _functions(tree: ast.AST) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def _called_names(node: ast.AST) -> set[str]:
    names = set()
    for call in ast.walk(node):
        if isinstance(call, ast.Call):
            func = call.func
            if isinstance(func, ast.Name):
                names.add(func.id)
            elif isinstance(func, ast.Attribute):
                names.add(func.attr)
    return names


def _asserts(node: ast.AST) -> bool:
    """An assert statement, pytest.raises or warns, or Playwright's expect."""
    return any(isinstance(inner, ast.Assert) for inner in ast.walk(node)) or bool(_called_names(node) & CHECKING_CALLS)


def _raises_by_hand(node: ast.AST) -> bool:
    """An AssertionError raised by hand, or pytest.fail."""
    for inner in ast.walk(node):
        if isinstance(inner, ast.Raise) and inner.exc is not None and "AssertionError" in ast.unparse(inner.exc):
            return True
    return bool(_called_names(node) & FAILING_CALLS)


def _closure(bodies: dict[str, list[ast.AST]], checks: set[str]) -> set[str]:
    """``checks`` and every function that calls one of them, however indirectly."""
    while True:
        more = {
            name
            for name, nodes in bodies.items()
            if name not in checks and any(_called_names(node) & checks for node in nodes)
        }
        if not more:
            return checks
        checks = checks | more


def helpers(trees: tuple[Path, ...] = HELPER_TREES) -> tuple[set[str], set[str]]:
    """The names of the functions in ``trees`` that assert (directly or through another), and of those that only
    raise by hand."""
    bodies: dict[str, list[ast.AST]] = {}
    for tree in trees:
        for path in tree.rglob("*.py"):
            for function in _functions(ast.parse(path.read_text(), filename=str(path))):
                bodies.setdefault(function.name, []).append(function)
    asserting = _closure(bodies, {name for name, nodes in bodies.items() if any(_asserts(n) for n in nodes)})
    raising = _closure(bodies, {name for name, nodes in bodies.items() if any(_raises_by_hand(n) for n in nodes)})
    return asserting, raising - asserting


def unchecked_tests(source: str, asserting: set[str], raising: set[str]) -> tuple[list[str], list[str]]:
    """The test functions of a module's ``source`` that check nothing, and those that check only by raising by hand."""
    nothing, by_hand = [], []
    for function in _functions(ast.parse(source)):
        if not function.name.startswith("test_") or _asserts(function):
            continue
        called = _called_names(function)
        if called & asserting:
            continue
        if _raises_by_hand(function) or called & raising:
            by_hand.append(function.name)
        else:
            nothing.append(function.name)
    return nothing, by_hand


def test_every_test_function_checks_something() -> None:
    asserting, raising = helpers()
    nothing, by_hand = [], []
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        where = path.relative_to(ROOT)
        found = unchecked_tests(path.read_text(), asserting, raising)
        nothing += [f"{where}::{name}" for name in found[0]]
        by_hand += [f"{where}::{name}" for name in found[1]]
    assert nothing == []
    assert sorted(by_hand) == sorted(RAISE_BY_HAND)  # a new one is listed with why; each listed one is still one


@pytest.mark.parametrize(
    "source",
    [
        "def test_a():\n    x = 1\n",
        "def test_b():\n    print(compute())\n",
        "def test_c():\n    if False:\n        pass\n",
        "def test_d():\n    helper_that_only_logs()\n",
    ],
)
def test_the_check_finds_a_test_that_checks_nothing(source: str) -> None:
    name = source.split("(")[0].removeprefix("def ")
    assert unchecked_tests(source, {"check_it"}, {"raise_it"}) == ([name], [])


@pytest.mark.parametrize(
    "source",
    [
        "def test_a():\n    assert f() == 1\n",
        "def test_b():\n    with pytest.raises(ValueError):\n        f()\n",
        "def test_c():\n    check_it(f())\n",
        "def test_d():\n    expect(page.locator('#x')).to_have_text('y')\n",
    ],
)
def test_the_check_accepts_each_way_of_checking(source: str) -> None:
    assert unchecked_tests(source, {"check_it"}, {"raise_it"}) == ([], [])


@pytest.mark.parametrize(
    "source",
    [
        "def test_a():\n    raise AssertionError('found')\n",
        "def test_b():\n    pytest.fail('found')\n",
        "def test_c():\n    raise_it()\n",
    ],
)
def test_the_check_tells_a_test_that_only_raises_by_hand(source: str) -> None:
    name = source.split("(")[0].removeprefix("def ")
    assert unchecked_tests(source, {"check_it"}, {"raise_it"}) == ([], [name])
