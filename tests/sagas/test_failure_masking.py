"""Every failure the framework stores is masked before it is cut to length, and made in one place only."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from sagas import failures
from sagas.failures import MESSAGE_LIMIT, TRACEBACK_LIMIT, Failure, stored_text
from sagas.masking import MASK, secret_values

SAGAS = Path(failures.__file__).parent
CARD = "4111111111111111"


def test_a_secret_that_straddles_the_cut_is_masked_whole() -> None:
    prefix = "x" * (MESSAGE_LIMIT - 8)  # the cut falls in the middle of the card number
    try:
        raise ValueError(f"{prefix} card {CARD} declined")
    except ValueError as exc:
        failure = Failure.from_exception(exc, attempt=1, secrets=secret_values({"card_number": CARD}))
    assert len(failure.message) == MESSAGE_LIMIT
    assert CARD[:2] not in failure.message[len(prefix) :]
    assert failure.message.endswith(" card " + MASK[:2])
    assert CARD not in failure.traceback


def test_a_traceback_keeps_its_end_masked() -> None:
    text = f"{CARD} " + "y" * TRACEBACK_LIMIT  # the front is cut, and the card with it, whatever the order
    assert stored_text(text, [CARD], TRACEBACK_LIMIT, keep_end=True) == ("y" * TRACEBACK_LIMIT)
    text = "y" * (TRACEBACK_LIMIT - 3) + f" {CARD}"  # the card at the end is masked, not cut to its last digits
    kept = stored_text(text, [CARD], TRACEBACK_LIMIT, keep_end=True)
    assert kept.endswith(MASK)
    assert "1111" not in kept


def test_from_exception_cannot_be_called_without_saying_what_is_secret() -> None:
    assert inspect.signature(Failure.from_exception).parameters["secrets"].default is inspect.Parameter.empty
    with pytest.raises(TypeError, match="secrets"):
        Failure.from_exception(ValueError("x"), attempt=1)  # type: ignore[call-arg]


def _calls(tree: ast.AST) -> list[ast.Call]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)]


def _name(call: ast.Call) -> str:
    func = call.func
    if isinstance(func, ast.Attribute):
        return f"{_name_of(func.value)}.{func.attr}"
    return _name_of(func)


def _name_of(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_name_of(node.value)}.{node.attr}"
    return "?"


def _framework_modules() -> list[Path]:
    return [path for path in SAGAS.rglob("*.py") if "migrations" not in path.parts]


def unmasked_failures(source: str, *, failures_module: bool = False) -> list[str]:
    """The lines of ``source`` that make a failure without masking it: a Failure built (or replaced) outside
    sagas/failures.py, from_exception called without the secrets of what raised, or, inside sagas/failures.py, a
    message or traceback that does not pass through stored_text."""
    found = []
    for call in _calls(ast.parse(source)):
        name = _name(call)
        if failures_module:
            if name in {"cls", "replace"}:
                found.extend(
                    f"{call.lineno}: {keyword.arg} not through stored_text"
                    for keyword in call.keywords
                    if keyword.arg in {"message", "traceback"}
                    and not (isinstance(keyword.value, ast.Call) and _name(keyword.value) == "stored_text")
                )
            continue
        if name.rpartition(".")[2] == "Failure":
            found.append(f"{call.lineno}: a Failure built by hand")
        elif name.rpartition(".")[2] == "replace" and any(
            keyword.arg in {"message", "traceback"} for keyword in call.keywords
        ):
            found.append(f"{call.lineno}: a failure's text replaced by hand")
        elif name.endswith("Failure.from_exception") and not any(k.arg == "secrets" for k in call.keywords):
            found.append(f"{call.lineno}: from_exception without secrets")
    return found


def test_failures_are_made_only_by_the_functions_that_mask_them() -> None:
    """Every writer of a failure (the step's error and failures, the run's error, the events) stores a Failure,
    and a Failure's text is made fit to store in one function: stored_text."""
    found = {
        str(path.relative_to(SAGAS.parent)): unmasked_failures(
            path.read_text(), failures_module=path == SAGAS / "failures.py"
        )
        for path in _framework_modules()
    }
    assert {path: lines for path, lines in found.items() if lines} == {}


@pytest.mark.parametrize(
    ("source", "failures_module"),
    [
        ("Failure(type='t', message=text, failure_class=c)", False),
        ("failures.Failure(type='t', message=text, failure_class=c)", False),
        ("Failure.from_exception(exc, attempt=1)", False),
        ("dataclasses.replace(error, message=text)", False),
        ("cls(type='t', message=text[:2000], failure_class=c)", True),
        ("replace(self, traceback=self.traceback + more)", True),
    ],
)
def test_the_check_finds_each_way_round_the_masking(source: str, failures_module: bool) -> None:
    assert unmasked_failures(source, failures_module=failures_module)
