"""A saga's payload_schema: start() refuses a payload that does not match it, field by field, and writes nothing."""

from __future__ import annotations

from typing import Any

import pytest

import sagas
from sagas.models import SagaEvent, SagaRun
from tests.testapp.sagas import JsonSchemaTyped, PydanticTyped

pytestmark = pytest.mark.django_db


def refused(saga: type[sagas.Saga], payload: dict[str, Any]) -> sagas.InvalidPayload:
    with pytest.raises(sagas.InvalidPayload) as raised:
        saga.start(payload)
    assert not SagaRun.objects.exists()
    assert not SagaEvent.objects.exists()
    return raised.value


def test_a_pydantic_schema_names_every_field_that_is_wrong() -> None:
    error = refused(PydanticTyped, {"account_id": "seven", "lines": [{"sku": "cup", "quantity": 0}, {"quantity": 1}]})

    assert set(error.errors) == {"account_id", "lines.0.quantity", "lines.1.sku"}
    assert error.errors["lines.0.quantity"] == ["Input should be greater than 0"]
    assert error.errors["lines.1.sku"] == ["Field required"]
    assert str(error).startswith("The payload of saga 'tests.typed_pydantic' does not match its payload_schema: ")
    assert "lines.1.sku: Field required" in str(error)


def test_a_json_schema_names_every_field_that_is_wrong() -> None:
    error = refused(JsonSchemaTyped, {"account_id": 7, "lines": [{"sku": 5}], "coupon": "X"})

    assert error.errors == {
        "": ["Additional properties are not allowed ('coupon' was unexpected)"],
        "amount": ["'amount' is a required property"],
        "lines.0.sku": ["5 is not of type 'string'"],
    }


@pytest.mark.parametrize(
    ("saga", "payload"),
    [
        (PydanticTyped, {"account_id": 7, "lines": [{"sku": "cup", "quantity": 2}]}),
        (JsonSchemaTyped, {"account_id": 7, "amount": "12.50"}),
    ],
)
def test_a_payload_that_matches_is_stored_as_it_was_given(saga: type[sagas.Saga], payload: dict[str, Any]) -> None:
    run = saga.start(payload)
    assert SagaRun.objects.get(pk=run.pk).payload == payload  # validated, not rewritten by the schema


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        (dict, "payload_schema dict is a class but not a pydantic model"),
        ({"type": "nope"}, "payload_schema is not a valid JSON Schema"),
        ("orders", "payload_schema must be a pydantic model class or a JSON Schema dict"),
    ],
)
def test_a_schema_that_cannot_be_one_is_refused_when_the_saga_is_declared(schema: Any, problem: str) -> None:
    with pytest.raises(sagas.InvalidDefinition, match=problem):

        class Broken(sagas.Saga):
            name = "tests.broken_schema"
            payload_schema = schema
            steps = [sagas.Step(lambda ctx: None, name="only")]
