"""Checks that a saga can be undone: every step compensable or declared otherwise, and each compensation
idempotent and restoring what its action changed."""

from __future__ import annotations

import difflib
import pprint
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sagas.definitions import StepContext
from sagas.jsonsafe import json_copy

if TYPE_CHECKING:
    from sagas.definitions import Saga, Step


class CompensationDefect(AssertionError):
    """What the toolkit found wrong with a saga's compensations (an AssertionError, so pytest shows it)."""


def step_kind(step: Step) -> str:
    """How a step is undone: ``compensable``, ``irreversible`` (a pivot), ``read_only`` or ``undeclared``."""
    if step.compensation is not None:
        return "compensable"
    if step.irreversible:
        return "irreversible"
    if step.read_only:
        return "read_only"
    return "undeclared"


def assert_compensable(saga: type[Saga]) -> dict[str, str]:
    """Every step of ``saga`` has a compensation, or says why not (``irreversible=True``: a pivot, which the
    saga class already requires after every compensable step; ``read_only=True``: nothing to undo). Returns
    each step's kind; raises CompensationDefect listing every step that says nothing."""
    kinds = {step.name: step_kind(step) for step in saga.steps}
    missing = [name for name, kind in kinds.items() if kind == "undeclared"]
    if missing:
        lines = [
            f"  - {name}: no compensation, and not declared irreversible=True (a pivot: its effect stays) or "
            "read_only=True (it changes nothing)"
            for name in missing
        ]
        raise CompensationDefect(
            f"Saga {saga.name!r} v{saga.version} cannot be fully undone: {len(missing)} of {len(kinds)} steps "
            "would be skipped by compensation without saying why:\n" + "\n".join(lines)
        )
    return kinds


@dataclass(frozen=True)
class CompensationCheck:
    """The snapshots ``check_compensation`` took, and the step's output."""

    step: str
    before: Any  # after the steps before it ran, before its action
    after_action: Any
    after_compensation: Any
    after_second_compensation: Any
    output: Any  # what the action returned (as stored: JSON)
    results: dict[str, Any]  # the outputs of the steps it followed


def check_compensation(
    saga: type[Saga],
    step: str,
    payload: Mapping[str, Any],
    *,
    snapshot: Callable[[], Any],
    results: Mapping[str, Any] | None = None,
) -> CompensationCheck:
    """Run ``step``'s action, then its compensation twice, in this process, and check the compensation undoes
    the action exactly once: the state after the first compensation equals the state before the action, and
    the second compensation (a redelivered message: same idempotency key, next attempt) changes nothing.

    ``snapshot`` returns the state the step may change, as values that compare by value (dicts of field
    values, not model instances). ``results``: the outputs of the steps it follows; by default the actions of
    every step it depends on (directly or not) run first, in declaration order, to produce them (their
    effects stay). Raises CompensationDefect: the step has no compensation, its action changed nothing the
    snapshot shows (the check would prove nothing), the compensation did not restore the state, or the second
    compensation changed it again.
    """
    declared = saga.step(step)
    if declared.compensation is None:
        raise CompensationDefect(f"Step {step!r} of saga {saga.name!r} has no compensation to check.")
    run_id = uuid.uuid4()
    done = dict(results) if results is not None else _run_ancestors(saga, step, payload, run_id)
    merged = dict(payload)
    for output in done.values():
        if isinstance(output, dict):
            merged.update(output)
    key = f"{run_id}:{step}"

    def context(attempt: int, *, compensation: bool, result: Any = None) -> StepContext:
        return StepContext(
            saga_id=run_id,
            saga_name=saga.name,
            step=step,
            payload=merged,
            results=done,
            idempotency_key=f"{key}:compensate" if compensation else key,
            attempt=attempt,
            result=result,
        )

    before = snapshot()
    output = json_copy(declared.action(context(1, compensation=False)), what=f"output of step {step!r}")
    after_action = snapshot()
    declared.compensation(context(1, compensation=True, result=output))
    after_compensation = snapshot()
    declared.compensation(context(2, compensation=True, result=output))
    after_second = snapshot()
    check = CompensationCheck(step, before, after_action, after_compensation, after_second, output, done)
    where = f"Step {step!r} of saga {saga.name!r}"
    if after_action == before:
        raise CompensationDefect(
            f"{where}: its action changed nothing the snapshot shows, so its compensation cannot be checked; "
            f"snapshot the state the step changes. Snapshot:\n{_show(before)}"
        )
    if after_compensation != before:
        raise CompensationDefect(
            f"{where}: compensating did not restore the state from before the action "
            f"(- before the action, + after compensating):\n{_diff(before, after_compensation)}"
        )
    if after_second != after_compensation:
        raise CompensationDefect(
            f"{where}: compensating twice is not harmless; the second compensation (same idempotency key "
            f"{key}:compensate, attempt 2) changed the state again (- after the first, + after the second):\n"
            f"{_diff(after_compensation, after_second)}"
        )
    return check


def _run_ancestors(saga: type[Saga], step: str, payload: Mapping[str, Any], run_id: uuid.UUID) -> dict[str, Any]:
    """Run the actions of the steps ``step`` depends on, in declaration order, as one run would: their
    outputs, keyed by step name."""
    ancestors = saga.ancestors()[step]
    done: dict[str, Any] = {}
    for earlier in saga.steps:
        if earlier.name not in ancestors:
            continue
        merged = dict(payload)
        for output in done.values():
            if isinstance(output, dict):
                merged.update(output)
        ctx = StepContext(
            saga_id=run_id,
            saga_name=saga.name,
            step=earlier.name,
            payload=merged,
            results=dict(done),
            idempotency_key=f"{run_id}:{earlier.name}",
            attempt=1,
        )
        done[earlier.name] = json_copy(earlier.action(ctx), what=f"output of step {earlier.name!r}")
    return done


def _show(value: Any) -> str:
    return pprint.pformat(value, width=100, sort_dicts=True)


def _diff(expected: Any, actual: Any) -> str:
    lines = difflib.unified_diff(_show(expected).splitlines(), _show(actual).splitlines(), lineterm="", n=1)
    return "\n".join(line for line in lines if not line.startswith(("---", "+++", "@@")))
