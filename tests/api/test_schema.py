"""The OpenAPI schema tells the truth: schemathesis sends every operation generated requests, valid and invalid,
as a superuser (and the operator actions as a user who may act but not read runs), and every answer is a
documented 4xx or a 2xx that matches the schema, never a 500."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.authtoken.models import Token
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from sagas.api.serializers import openapi_30
from sagas.states import RunStatus, StepStatus
from tests.factories import COMPENSATION_FAILED, SagaRunFactory, waiting_run

EXAMPLES = 25  # per operation and generation mode
CHECKS = [
    not_a_server_error,
    ignored_auth,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Invalid input must be refused.
NEGATIVE_CHECKS = [*CHECKS, negative_data_rejection]


def test_the_schema_documents_every_endpoint(client: Any, make_user: Any) -> None:
    client.force_login(make_user(superuser=True, username="reader"))
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()

    operations = {
        op["operationId"]: (path, method) for path, item in schema["paths"].items() for method, op in item.items()
    }
    assert operations == {
        "start_run": ("/api/sagas/{name}/runs/", "post"),
        "list_runs": ("/api/runs/", "get"),
        "get_run": ("/api/runs/{run_id}/", "get"),
        "list_run_events": ("/api/runs/{run_id}/events/", "get"),
        "retry_run": ("/api/runs/{run_id}/retry/", "post"),
        "cancel_run": ("/api/runs/{run_id}/cancel/", "post"),
        "resolve_run": ("/api/runs/{run_id}/resolve/", "post"),
        "signal_run": ("/api/runs/{run_id}/signal/", "post"),
    }
    start = schema["paths"]["/api/sagas/{name}/runs/"]["post"]
    assert set(start["responses"]) == {"200", "201", "400", "401", "403", "404", "409", "413"}
    assert "orders.place_order" in start["parameters"][0]["schema"]["enum"]
    assert schema["components"]["schemas"]["StartRunRequest"]["required"] == ["payload"]
    assert set(schema["components"]["securitySchemes"]) == {"tokenAuth", "cookieAuth"}


def test_an_actions_answer_is_documented_as_the_whole_run_or_only_its_id_and_status(
    client: Any, make_user: Any
) -> None:
    client.force_login(make_user(superuser=True, username="reader"))
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    components = schema["components"]["schemas"]

    for action in ("retry", "cancel", "resolve", "signal"):
        operation = schema["paths"][f"/api/runs/{{run_id}}/{action}/"]["post"]
        answer = operation["responses"]["200"]
        assert answer["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/RunAfterAction"}
        assert "to a user who holds `sagas.view_sagarun`, else only its `id` and `status`" in answer["description"]
        assert "else its `id` and `status` only" in operation["description"]
    assert components["RunAfterAction"] == {
        "oneOf": [{"$ref": "#/components/schemas/RunDetail"}, {"$ref": "#/components/schemas/RunStatus"}]
    }
    # Closed, so a whole run (which has an id and a status too) matches only RunDetail, as oneOf requires.
    assert components["RunStatus"]["required"] == ["id", "status"]
    assert components["RunStatus"]["additionalProperties"] is False
    assert set(components["RunStatus"]["properties"]) == {"id", "status"}


Calls = Counter[tuple[str, str, int]]  # (operation, generation mode, status class) -> requests


def runs_in_every_state() -> dict[str, str]:
    """A run in each state an action can meet (status -> id), so generated requests get past the 404 of a
    random id; new ones for each operation, so one operation's successes leave the next something to act on."""
    runs = {
        status: str(SagaRunFactory(status=status, step_statuses=steps).pk)
        for status, steps in [
            (RunStatus.PENDING, {}),
            (RunStatus.EXECUTING, {"create_order": StepStatus.SUCCEEDED}),
            (RunStatus.FAILED, COMPENSATION_FAILED),
            (RunStatus.COMPLETED, {name: StepStatus.SUCCEEDED for name in COMPENSATION_FAILED}),
        ]
    }
    return {**runs, StepStatus.WAITING: str(waiting_run().pk)}


def strategies(operation: Any, mode: GenerationMode, headers: dict[str, str]) -> list[Any]:
    """Requests for ``operation``: as generated, and on existing runs (resolving, the step that can be resolved)."""
    found = [operation.as_strategy(generation_mode=mode, headers=headers)]
    if "{run_id}" not in operation.path:
        return found
    runs = runs_in_every_state()
    found += [
        operation.as_strategy(generation_mode=mode, headers=headers, path_parameters={"run_id": run_id})
        for run_id in runs.values()
    ]
    if operation.path.endswith("/resolve/") and mode == GenerationMode.POSITIVE:
        body = {"step": "charge_payment", "reason": "refunded by hand"}
        found.append(
            operation.as_strategy(headers=headers, path_parameters={"run_id": runs[RunStatus.FAILED]}, body=body)
        )
    if operation.path.endswith("/signal/") and mode == GenerationMode.POSITIVE:
        body = {"name": "approved", "data": {"approved_by": "ann"}}
        found.append(
            operation.as_strategy(headers=headers, path_parameters={"run_id": runs[StepStatus.WAITING]}, body=body)
        )
    return found


def fuzz(
    operation: Any, mode: GenerationMode, headers: dict[str, str], calls: Calls, *, keys: set[str] | None = None
) -> None:
    """Send up to ``EXAMPLES`` requests generated for ``operation`` in ``mode``; each answer must pass the checks
    (and with ``keys``, a 2xx must hold exactly those)."""
    checks = CHECKS if mode == GenerationMode.POSITIVE else NEGATIVE_CHECKS

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,  # the same requests on every run
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=st.one_of(strategies(operation, mode, headers)))
    def call(case: schemathesis.Case) -> None:
        response = case.call(headers=headers)
        case.validate_response(response, checks=checks, headers=headers)
        if keys is not None and response.status_code // 100 == 2:
            assert set(response.json()) == keys, f"{operation.label} answered {response.json()}"
        calls[(operation.label, mode.value, response.status_code // 100)] += 1

    call()


# The requests go through Django's WSGI handler as a server calls it, so each request runs as in production
# (its own transactions, publishing on commit to the queue nobody consumes); hence committed data, flushed after.
@pytest.mark.django_db(transaction=True)
def test_every_operation_answers_generated_requests_as_its_schema_says(make_user: Any) -> None:
    user = make_user(superuser=True, username="fuzzer")
    headers = {"Authorization": f"Token {Token.objects.create(user=user).key}"}
    schema = schemathesis.openapi.from_wsgi("/api/schema/", WSGIHandler(), headers=headers)
    operations = [result.ok() for result in schema.get_all_operations()]
    calls: Calls = Counter()

    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(operation, mode, headers, calls)

    assert len(operations) == 8
    check_every_operation_was_exercised(operations, calls)


def check_every_operation_was_exercised(operations: list[Any], calls: Calls) -> None:
    for operation in operations:
        for mode in ("positive", "negative"):
            sent = sum(n for (label, m, _), n in calls.items() if (label, m) == (operation.label, mode))
            assert sent >= EXAMPLES // 2, f"only {sent} {mode} requests to {operation.label}: {calls}"
        # Valid requests got through to the operation's work at least once, not only to its refusals.
        assert calls[(operation.label, "positive", 2)] >= 1, f"{operation.label} never answered 2xx: {calls}"
    print(f"schemathesis: {sum(calls.values())} requests to {len(operations)} operations: {sorted(calls.items())}")


# The actions answer such a user another shape (RunStatus, of the oneOf), which the superuser's run never sees.
@pytest.mark.django_db(transaction=True)
def test_the_actions_answer_a_user_who_may_not_read_runs_as_their_schema_says(make_user: Any) -> None:
    user = make_user("retry", "cancel", "resolve", "signal", username="operator")
    headers = {"Authorization": f"Token {Token.objects.create(user=user).key}"}
    # The schema is read as a superuser: the schema view asks only for a signed-in user, but one answer for all.
    reader = {"Authorization": f"Token {Token.objects.create(user=make_user(superuser=True)).key}"}
    schema = schemathesis.openapi.from_wsgi("/api/schema/", WSGIHandler(), headers=reader)
    actions = [
        operation
        for operation in (result.ok() for result in schema.get_all_operations())
        if operation.method.upper() == "POST" and "{run_id}" in operation.path
    ]
    calls: Calls = Counter()

    for operation in actions:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(operation, mode, headers, calls, keys={"id", "status"})

    assert sorted(operation.path.rsplit("/", 2)[-2] for operation in actions) == [
        "cancel",
        "resolve",
        "retry",
        "signal",
    ]
    check_every_operation_was_exercised(actions, calls)


def test_the_start_request_shows_the_payload_shape_of_each_saga(client: Any, make_user: Any) -> None:
    client.force_login(make_user(superuser=True))
    schema = client.get("/api/schema/", {"format": "json"}).json()
    payload = schema["components"]["schemas"]["StartRunRequest"]["properties"]["payload"]
    shapes = {shape["title"]: shape for shape in payload["anyOf"]}

    typed = shapes["payload of tests.typed_pydantic"]  # a pydantic model, its nested model inlined
    assert typed["required"] == ["account_id", "lines"]
    line = typed["properties"]["lines"]["items"]
    assert line["properties"]["quantity"] == {
        "minimum": 0,
        "exclusiveMinimum": True,
        "title": "Quantity",
        "type": "integer",
    }
    assert shapes["payload of tests.typed_jsonschema"]["additionalProperties"] is False  # a JSON Schema, as declared
    assert shapes["payload of a saga without a payload_schema"] == {
        "type": "object", "additionalProperties": {}, "title": "payload of a saga without a payload_schema",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("draft", "openapi"),
    [
        ({"const": "EUR"}, {"enum": ["EUR"]}),
        ({"type": ["string", "null"]}, {"type": "string", "nullable": True}),
        ({"type": ["string", "integer"]}, {"anyOf": [{"type": "string"}, {"type": "integer"}]}),
        ({"exclusiveMaximum": 10, "$schema": "x"}, {"maximum": 10, "exclusiveMaximum": True}),
    ],
)
def test_a_payload_schema_is_served_in_openapis_dialect(draft: dict[str, Any], openapi: dict[str, Any]) -> None:
    assert openapi_30(draft) == openapi
