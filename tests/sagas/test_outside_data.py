"""Data from outside a run (signals, resolve outputs) is checked as a start payload is (pure logic, no database)."""

from __future__ import annotations

import pydantic
import pytest

import sagas
from sagas.models import SagaRun
from sagas.services.outside_data import outside_data


class Approved(pydantic.BaseModel):
    tracking: str = pydantic.Field(pattern="^APPROVED-")
    amount: int


def run_started_with(payload: dict[str, object]) -> SagaRun:
    return SagaRun(saga_name="tests.x", payload=payload)


def test_data_matching_a_pydantic_schema_is_kept_as_sent() -> None:
    data = {"tracking": "APPROVED-1", "amount": 3, "note": "extra keys are the model's business"}
    assert outside_data(run_started_with({"order": 1}), data, what="data", field="data", schema=Approved) == data


def test_data_failing_a_pydantic_schema_names_each_field() -> None:
    data = {"tracking": "no", "amount": "x"}
    with pytest.raises(sagas.InvalidPayload, match="does not match its schema") as caught:
        outside_data(run_started_with({}), data, what="data", field="data", schema=Approved)
    assert sorted(caught.value.errors) == ["amount", "tracking"]
    assert caught.value.field == "data"


def test_a_value_that_is_not_an_object_fails_a_schema_and_sets_no_key() -> None:
    with pytest.raises(sagas.InvalidPayload, match="A JSON object is expected, not list"):
        outside_data(run_started_with({}), [1], what="output", field="output", schema=Approved)
    assert outside_data(run_started_with({"order": 1}), [1], what="output", field="output") == [1]


def test_every_key_of_the_start_payload_it_would_set_is_named() -> None:
    with pytest.raises(sagas.InvalidPayload) as caught:
        outside_data(run_started_with({"a": 1, "b": 2, "c": 3}), {"c": 0, "a": 0, "d": 0}, what="data", field="data")
    assert list(caught.value.errors) == ["a", "c"]
    assert "may not set 'a', 'c'" in str(caught.value)


def test_text_the_database_refuses_is_refused_with_its_field() -> None:
    with pytest.raises(sagas.InvalidPayload, match="NUL") as caught:
        outside_data(run_started_with({}), {"note": "a\x00b"}, what="data", field="data")
    assert caught.value.field == "data"


def test_a_waits_schema_is_in_its_spec_only_when_it_has_one() -> None:
    assert sagas.Wait("approved").waits_for.to_spec() == {"signal": True, "timeout": None}
    spec = sagas.Wait("approved", schema={"type": "object"}, timeout=5).waits_for.to_spec()
    assert spec == {"signal": True, "timeout": 5, "schema": {"type": "object"}}
    assert sagas.Wait("approved", schema=Approved).waits_for.to_spec()["schema"]["required"] == ["tracking", "amount"]
