"""Sagas of 1 to 10 no-op steps: what the framework costs per step when the steps themselves cost nothing."""

from __future__ import annotations

import sagas

MAX_STEPS = 10


def noop(ctx: sagas.StepContext) -> None:
    return None


def undo(ctx: sagas.StepContext) -> None:
    return None


def _saga(count: int, *, eager: bool = False) -> type[sagas.Saga]:
    # Every step but the last has a compensation, as in a real saga; none runs on the success path.
    steps = [
        sagas.Step(noop, compensation=undo if index < count else None, name=f"step{index}")
        for index in range(1, count + 1)
    ]
    attributes: dict[str, object] = {"__module__": __name__, "name": f"bench.noop{count}", "steps": steps}
    if eager:
        # The opt-in eager dispatch (issue 13): a framework that does not read it yet runs the default mode.
        attributes.update(name=f"bench.eager{count}", eager=True)
    return type(f"NoOp{count}{'Eager' if eager else ''}", (sagas.Saga,), attributes)


# bench.noop1 ... bench.noop10, and the same steps as bench.eager1 ... bench.eager10 (NoOp3Eager, ...) with
# ``eager = True``; declared in the web and worker processes alike.
BY_STEPS: dict[int, type[sagas.Saga]] = {count: _saga(count) for count in range(1, MAX_STEPS + 1)}
EAGER_BY_STEPS: dict[int, type[sagas.Saga]] = {count: _saga(count, eager=True) for count in range(1, MAX_STEPS + 1)}
