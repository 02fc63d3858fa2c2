"""Checks that what the framework stores (payloads, step outputs) is plain JSON that PostgreSQL's jsonb takes and
every page can show."""

from __future__ import annotations

import json
import math
import sys
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


def json_size(value: Any) -> int:
    """Bytes of ``value`` as compact JSON (UTF-8): what every read of a run that holds it carries."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


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


class _Unreadable(ValueError):
    """A JSON value that json.loads reads and a run cannot store; its argument says why (a message template)."""


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:  # more digits than sys.get_int_max_str_digits() allows
        raise _Unreadable(f"A number in the {{what}} has more than {sys.get_int_max_str_digits()} digits; send it as a "
                          "string.") from None  # fmt: skip


def _finite(text: str) -> float:
    number = float(text)  # 1e999 is inf
    if not math.isfinite(number):
        raise _Unreadable(NOT_FINITE)
    return number


def _constant(text: str) -> float:
    raise _Unreadable(NOT_FINITE)  # NaN, Infinity, -Infinity: Python's json reads them, jsonb does not


NOT_FINITE = "The {what} holds NaN, Infinity or a number beyond a float's range; send it as a string."


def read_json(text: str, *, what: str) -> Any:
    """``text`` (JSON a person or a client typed: a signal's data, a resolve's output) as the value a run may store,
    or InvalidPayload saying why not: not JSON, nested too deep for Python's parser, a number of more digits than
    int() converts, NaN or an infinity, or what ``storage_problem`` refuses. Never a RecursionError or a bare
    ValueError, which would be a 500 or a traceback."""
    try:
        value = json.loads(text, parse_int=_whole, parse_float=_finite, parse_constant=_constant)
    except _Unreadable as exc:
        raise InvalidPayload(str(exc).format(what=what)) from None
    except RecursionError:  # the decoder recurses once per nested array or object
        raise InvalidPayload(
            f"The {what} is nested deeper than {MAX_DEPTH} levels; keep it to ids and plain values."
        ) from None
    except ValueError as exc:
        raise InvalidPayload(f"The {what} is not valid JSON: {exc}.") from None
    problem = storage_problem(value, what=what)
    if problem:
        raise InvalidPayload(problem)
    return value
