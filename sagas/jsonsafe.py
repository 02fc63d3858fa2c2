"""Checks that what the framework stores (payloads, step outputs) is plain JSON."""

from __future__ import annotations

import json
from typing import Any

from sagas.exceptions import InvalidPayload


def json_copy(value: Any, *, what: str) -> Any:
    """A JSON round-trip copy of ``value`` (tuples become lists), or InvalidPayload naming ``what``."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise InvalidPayload(
            f"The {what} is not JSON-serialisable ({exc}). Pass ids, strings, numbers, lists and dicts "
            "(amounts as strings, dates in ISO format)."
        ) from exc
