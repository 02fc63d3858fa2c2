"""Saga versions: which ones the code declares, which ones the database still has unfinished runs of."""

from __future__ import annotations

import io
import json
import re

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from participants.checkout.sagas import PlaceOrder, PlaceOrderV1
from participants.travel.sagas import BookTrip, BookTripV1
from sagas import checks, registry
from sagas.selectors import SagaVersion, saga_versions
from sagas.states import RunStatus
from tests.factories import SagaDefinitionFactory, SagaRunFactory

pytestmark = pytest.mark.django_db


def plant(version: int, status: str) -> None:
    definition = SagaDefinitionFactory(version=version, spec_hash=f"hash-of-version-{version}")
    SagaRunFactory(definition=definition, status=status)


def version_of(found: list[SagaVersion], version: int) -> SagaVersion:
    (match,) = [v for v in found if v.saga == PlaceOrder.name and v.version == version]
    return match


@pytest.mark.parametrize(("old", "new"), [(PlaceOrderV1, PlaceOrder), (BookTripV1, BookTrip)])
def test_the_example_sagas_keep_version_1_with_the_steps_of_version_2(old, new) -> None:
    assert registry.get_saga(new.name) is new
    assert registry.get_saga(new.name, 1) is old
    flags = ("irreversible", "read_only")
    assert [{k: v for k, v in step.items() if k not in flags} for step in new.spec()["steps"]] == old.spec()["steps"]


def test_versions_are_listed_with_their_runs_and_unfinished_runs() -> None:
    plant(1, RunStatus.EXECUTING)
    plant(1, RunStatus.COMPLETED)
    plant(2, RunStatus.FAILED)  # waits for a person: not finished
    plant(7, RunStatus.COMPENSATING)  # a version the code does not declare
    plant(9, RunStatus.CANCELLED)  # undeclared, but nothing of it is left to run

    found = saga_versions()

    assert version_of(found, 1) == SagaVersion(PlaceOrder.name, 1, True, False, runs=2, unfinished=1)
    assert version_of(found, 2) == SagaVersion(PlaceOrder.name, 2, True, True, runs=1, unfinished=1)
    assert version_of(found, 7) == SagaVersion(PlaceOrder.name, 7, False, False, runs=1, unfinished=1)
    assert version_of(found, 9) == SagaVersion(PlaceOrder.name, 9, False, False, runs=1, unfinished=0)
    assert [(v.saga, v.version) for v in found if v.orphaned] == [(PlaceOrder.name, 7)]
    # By saga, then version: a version of ten does not come before a version of two.
    assert [v.version for v in found if v.saga == PlaceOrder.name] == [1, 2, 7, 9]
    assert found == sorted(found, key=lambda v: (v.saga, v.version))
    assert any(v.saga == BookTrip.name and v.latest and v.runs == 0 for v in found)  # declared, never run


def test_the_check_warns_of_unfinished_runs_of_an_undeclared_version() -> None:
    plant(7, RunStatus.EXECUTING)
    plant(7, RunStatus.PENDING)
    plant(9, RunStatus.COMPLETED)

    (warning,) = checks.check_undeclared_versions(None, databases=["default"])

    assert warning.id == "sagas.W008"
    assert "'orders.place_order' version 7 has 2 unfinished run(s)" in warning.msg
    assert "(declared: 1, 2)" in warning.msg
    assert checks.check_undeclared_versions(None, databases=None) == []  # not asked to look at a database


def test_the_check_says_nothing_when_every_unfinished_run_has_its_version() -> None:
    plant(1, RunStatus.EXECUTING)
    plant(9, RunStatus.COMPENSATED)
    assert checks.check_undeclared_versions(None, databases=["default"]) == []


def test_saga_versions_prints_a_table_and_exits_1_for_orphaned_runs() -> None:
    plant(1, RunStatus.EXECUTING)
    out = io.StringIO()
    call_command("saga_versions", stdout=out)
    table = [re.split(r"\s{2,}", line.strip()) for line in out.getvalue().splitlines()]
    assert table[0] == ["saga", "version", "declared", "runs", "unfinished"]
    assert [PlaceOrder.name, "1", "yes", "1", "1"] in table
    assert [PlaceOrder.name, "2", "yes, new runs", "0", "0"] in table

    plant(7, RunStatus.EXECUTING)
    out = io.StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("saga_versions", "--json", stdout=out)
    assert raised.value.returncode == 1
    assert "orders.place_order v7 (1)" in str(raised.value)
    rows = {(row["saga"], row["version"]): row for row in json.loads(out.getvalue())}
    assert rows[(PlaceOrder.name, 7)] == {
        "saga": PlaceOrder.name, "version": 7, "declared": False, "latest": False, "runs": 1, "unfinished": 1,
        "orphaned": True,
    }  # fmt: skip
