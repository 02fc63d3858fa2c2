"""Checks that what the framework stores (payloads, step outputs) is plain JSON that PostgreSQL's jsonb takes and
every page can show."""

from __future__ import annotations

import json
from typing import Any

from sagas.exceptions import InvalidPayload

# Deeper values are refused: they are shown (masked) by walking them recursively, in the admin and the API.
MAX_DEPTH = 100


def json_copy(value: Any, *, what: str) -> Any:
    """A JSON round-trip copy of ``value`` (tuples become lists), or InvalidPayload naming ``what``: not
    JSON-serialisable, nested deeper than MAX_DEPTH, or text jsonb refuses (NUL, an unpaired surrogate)."""
    problem = storage_problem(value, what=what)
    if problem:
        raise InvalidPayload(problem)
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise InvalidPayload(
            f"The {what} is not JSON-serialisable ({exc}). Pass ids, strings, numbers, lists and dicts "
            "(amounts as strings, dates in ISO format)."
        ) from exc


def storage_problem(value: Any, *, what: str) -> str | None:
    """Why ``value`` cannot be stored and shown, or None (walked without recursion: the value may be deep)."""
    pending = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if depth > MAX_DEPTH:
            return f"The {what} is nested deeper than {MAX_DEPTH} levels; keep it to ids and plain values."
        if isinstance(item, dict):
            pending.extend((key, depth) for key in item)
            pending.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list | tuple):
            pending.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            if "\x00" in item:
                return f"Text in the {what} may not contain NUL characters (\\u0000)."
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return f"Text in the {what} must be valid Unicode (it holds an unpaired surrogate)."
    return None
