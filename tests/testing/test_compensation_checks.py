"""sagas.testing's compensation checks catch what they promise to: a missing compensation, a compensation that
does not restore the state, one that is not idempotent, and a snapshot that cannot tell."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import sagas
from sagas import registry
from sagas.exceptions import InvalidDefinition
from sagas.testing import CompensationDefect, assert_compensable, check_compensation

# The "service" the toy steps change: balances by account, and refunds done by idempotency key.
BALANCES: dict[str, int] = {}
REFUNDED: set[str] = set()


@pytest.fixture(autouse=True)
def fresh_service() -> None:
    BALANCES.clear()
    BALANCES.update({"ada": 100})
    REFUNDED.clear()


def reserve(ctx: sagas.StepContext) -> dict[str, Any]:
    return {"reservation": f"r-{ctx.payload['account']}"}


def charge(ctx: sagas.StepContext) -> dict[str, Any]:
    BALANCES[ctx.payload["account"]] -= ctx.payload["amount"]
    return {"charged": ctx.payload["amount"], "after": ctx.results["reserve"]["reservation"]}


def refund_once(ctx: sagas.StepContext) -> None:
    if ctx.idempotency_key not in REFUNDED:  # a participant that dedupes on the key
        REFUNDED.add(ctx.idempotency_key)
        BALANCES[ctx.payload["account"]] += ctx.result["charged"]


def refund_every_time(ctx: sagas.StepContext) -> None:
    BALANCES[ctx.payload["account"]] += ctx.result["charged"]


def refund_half(ctx: sagas.StepContext) -> None:
    if ctx.idempotency_key not in REFUNDED:
        REFUNDED.add(ctx.idempotency_key)
        BALANCES[ctx.payload["account"]] += ctx.result["charged"] // 2


def unreserve(ctx: sagas.StepContext) -> None:
    return None


def notify(ctx: sagas.StepContext) -> None:
    return None


def balances() -> dict[str, int]:
    return dict(BALANCES)


@pytest.fixture
def declare() -> Iterator[Any]:
    declared: list[type[sagas.Saga]] = []

    def make(steps: list[sagas.Step], name: str = "tests.toolkit") -> type[sagas.Saga]:
        cls = type("Toolkit", (sagas.Saga,), {"__module__": __name__, "name": name, "steps": steps})
        declared.append(cls)
        return cls

    yield make
    for cls in declared:
        registry.unregister(cls)


PAYLOAD = {"account": "ada", "amount": 30}


def test_a_compensation_that_dedupes_on_its_key_passes(declare) -> None:
    saga = declare([sagas.Step(reserve, unreserve), sagas.Step(charge, refund_once)])
    check = check_compensation(saga, "charge", PAYLOAD, snapshot=balances)
    assert (check.before, check.after_action, check.after_compensation) == ({"ada": 100}, {"ada": 70}, {"ada": 100})
    assert check.results == {"reserve": {"reservation": "r-ada"}}  # the step it follows ran first
    assert check.output == {"charged": 30, "after": "r-ada"}


def test_a_compensation_that_is_not_idempotent_is_caught(declare) -> None:
    saga = declare([sagas.Step(reserve, unreserve), sagas.Step(charge, refund_every_time)])
    with pytest.raises(CompensationDefect, match="compensating twice is not harmless") as caught:
        check_compensation(saga, "charge", PAYLOAD, snapshot=balances)
    assert "-{'ada': 100}\n+{'ada': 130}" in str(caught.value)  # what the second refund did


def test_a_compensation_that_does_not_restore_the_state_is_caught(declare) -> None:
    saga = declare([sagas.Step(reserve, unreserve), sagas.Step(charge, refund_half)])
    with pytest.raises(CompensationDefect, match="did not restore the state") as caught:
        check_compensation(saga, "charge", PAYLOAD, snapshot=balances)
    assert "-{'ada': 100}\n+{'ada': 85}" in str(caught.value)


def test_a_snapshot_that_sees_no_change_is_refused_rather_than_passed(declare) -> None:
    saga = declare([sagas.Step(reserve, unreserve), sagas.Step(charge, refund_once)])
    with pytest.raises(CompensationDefect, match="changed nothing the snapshot shows"):
        check_compensation(saga, "reserve", PAYLOAD, snapshot=balances)


def test_given_results_replace_running_the_earlier_steps(declare) -> None:
    saga = declare([sagas.Step(reserve, unreserve), sagas.Step(charge, refund_once)])
    check = check_compensation(saga, "charge", PAYLOAD, snapshot=balances, results={"reserve": {"reservation": "x"}})
    assert check.output["after"] == "x"


def test_a_missing_compensation_is_caught_naming_the_step(declare) -> None:
    saga = declare([sagas.Step(reserve, unreserve), sagas.Step(charge, refund_once), sagas.Step(notify)])
    with pytest.raises(CompensationDefect, match=r"1 of 3 steps") as caught:
        assert_compensable(saga)
    assert "  - notify: no compensation, and not declared irreversible=True" in str(caught.value)
    with pytest.raises(CompensationDefect, match="has no compensation to check"):
        check_compensation(saga, "notify", PAYLOAD, snapshot=balances)


def test_declared_pivots_and_read_only_steps_pass(declare) -> None:
    saga = declare(
        [
            sagas.Step(reserve, read_only=True),
            sagas.Step(charge, refund_once),
            sagas.Step(notify, irreversible=True),
        ]
    )
    assert assert_compensable(saga) == {"reserve": "read_only", "charge": "compensable", "notify": "irreversible"}


def test_a_pivot_before_a_compensable_step_is_refused_at_definition(declare) -> None:
    with pytest.raises(InvalidDefinition, match=r"step 'notify': irreversible=True makes it a pivot.*'charge' does"):
        declare(
            [sagas.Step(reserve, unreserve), sagas.Step(notify, irreversible=True), sagas.Step(charge, refund_once)]
        )


def test_a_pivot_parallel_to_a_compensable_branch_is_refused(declare) -> None:
    with pytest.raises(InvalidDefinition, match=r"'charge' does not"):
        declare(
            [
                sagas.Step(reserve, unreserve),
                sagas.Step(charge, refund_once, depends_on=["reserve"]),
                sagas.Step(notify, irreversible=True, depends_on=["reserve"]),
            ]
        )
    saga = declare(
        [
            sagas.Step(reserve, unreserve),
            sagas.Step(charge, refund_once, depends_on=["reserve"]),
            sagas.Step(notify, irreversible=True, depends_on=["charge"]),
        ],
        name="tests.toolkit_graph",
    )
    assert assert_compensable(saga)["notify"] == "irreversible"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"irreversible": True}, "irreversible=True says the step has nothing to compensate"),
        ({"read_only": True}, "read_only=True says the step has nothing to compensate"),
        ({"irreversible": "yes"}, "irreversible must be True or False"),
    ],
)
def test_contradictory_declarations_are_refused(declare, options: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidDefinition, match=message):
        declare([sagas.Step(charge, refund_once, **options)])


def test_a_step_cannot_be_both_irreversible_and_read_only(declare) -> None:
    with pytest.raises(InvalidDefinition, match="not both"):
        declare([sagas.Step(notify, irreversible=True, read_only=True)])


def test_the_new_declarations_leave_existing_spec_hashes_alone(declare) -> None:
    plain = declare([sagas.Step(reserve, unreserve)], name="tests.toolkit_plain")
    assert "irreversible" not in plain.spec()["steps"][0]
    assert "read_only" not in plain.spec()["steps"][0]
    pivot = declare([sagas.Step(reserve, irreversible=True)], name="tests.toolkit_pivot")
    assert pivot.spec()["steps"][0]["irreversible"] is True
