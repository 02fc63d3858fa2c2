"""Data from outside a run (a signal's data, the output a person gives a resolved step): checked as a start
payload is, and never allowed to rewrite what the run was started with."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sagas import schemas
from sagas.conf import sagas_settings
from sagas.exceptions import InvalidPayload
from sagas.jsonsafe import json_copy, json_size, storage_problem
from sagas.models import SagaRun


def outside_text(value: str, *, what: str, field: str) -> str:
    """``value`` (a reason, an actor's name) if the database can store it, else InvalidPayload naming ``field``."""
    problem = storage_problem(value, what=what)
    if problem:
        raise InvalidPayload(problem, field=field)
    return value


def outside_data(run: SagaRun, value: Any, *, what: str, field: str, schema: Any = None) -> Any:
    """``value`` as ``run`` may store it (a JSON copy), or InvalidPayload naming ``field``, before anything changes.

    Whoever sends a signal (a webhook, a user holding only the signal permission) or resolves a step is trusted no
    more than whoever starts a run: the value must be JSON the database takes, at most SAGAS["MAX_PAYLOAD_BYTES"]
    (every read of the run carries it), match ``schema`` (a Wait's, as ``Saga.payload_schema``) and, as an object,
    set no top-level key of the run's start payload: its keys are merged into what later steps and every
    compensation see, so such a key would rewrite what the run was started with (an account, an amount)."""
    try:
        copied = json_copy(value, what=what)
    except InvalidPayload as exc:
        raise InvalidPayload(str(exc), field=field) from None
    limit = int(sagas_settings.MAX_PAYLOAD_BYTES)
    size = json_size(copied)
    if size > limit:
        raise InvalidPayload(
            f"The {what} is {size} bytes of JSON, over the limit of {limit} (SAGAS['MAX_PAYLOAD_BYTES']): pass "
            "ids and amounts, and keep documents elsewhere.",
            field=field,
        )
    if isinstance(copied, Mapping):
        shadowed = sorted(key for key in copied if key in run.payload)
        if shadowed:
            raise InvalidPayload(
                f"The {what} may not set {', '.join(map(repr, shadowed))}: saga run {run.pk} was started with "
                "them, and data from outside a run may add to it, never rewrite what it was started with (the "
                "steps after it and the compensations read the start payload's values). Use other keys.",
                errors={key: ["The run was started with this key; outside data may not set it."] for key in shadowed},
                field=field,
            )
    if schema is not None:
        found = (
            schemas.errors(schema, copied)
            if isinstance(copied, Mapping)
            else {"": [f"A JSON object is expected, not {type(copied).__name__}."]}
        )
        if found:
            raise InvalidPayload(
                f"The {what} does not match its schema: {schemas.listed(found, field)}.", errors=found, field=field
            )
    return copied
