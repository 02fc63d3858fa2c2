"""Masks secrets (values under SAGAS["MASKED_KEYS"]) in payloads and outputs before a person sees them, and
wherever those values turn up in error text the framework stores."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from sagas.conf import sagas_settings
from sagas.exceptions import MaskedFailure

MASK = "••••••"


def _lowered(patterns: list[str] | None) -> list[str]:
    return [p.lower() for p in (patterns if patterns is not None else sagas_settings.MASKED_KEYS)]


def _matches(key: object, lowered: list[str]) -> bool:
    text = str(key).lower()
    return any(p in text for p in lowered)


def is_masked_key(key: object, patterns: list[str] | None = None) -> bool:
    """Whether values under ``key`` are secrets: it contains one of SAGAS["MASKED_KEYS"], in any case."""
    return _matches(key, _lowered(patterns))


def masked(value: Any, patterns: list[str] | None = None) -> Any:
    """A copy of ``value`` in which every dict value under a key matching a pattern is replaced by a mask."""
    return _masked(value, _lowered(patterns))


def _masked(value: Any, lowered: list[str]) -> Any:
    if isinstance(value, dict):
        return {key: MASK if _matches(key, lowered) else _masked(item, lowered) for key, item in value.items()}
    if isinstance(value, list):
        return [_masked(item, lowered) for item in value]
    return value


# Shorter values are not looked for in free text: "1" or "no" would blot out half of every message.
MIN_SECRET_LENGTH = 4


def secret_values(*documents: Any, patterns: list[str] | None = None) -> list[str]:
    """Every value held under a masked key anywhere in ``documents`` (payloads, outputs), as text, longest first:
    what must not appear in clear in an error message or a traceback."""
    lowered = _lowered(patterns)
    found: set[str] = set()

    def leaves(value: Any) -> None:
        if isinstance(value, dict):
            for item in value.values():
                leaves(item)
        elif isinstance(value, list | tuple):
            for item in value:
                leaves(item)
        elif value is not None and not isinstance(value, bool):
            found.add(str(value))

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if _matches(key, lowered):
                    leaves(item)
                else:
                    walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)

    for document in documents:
        walk(document)
    return sorted((text for text in found if len(text) >= MIN_SECRET_LENGTH), key=len, reverse=True)


def scrub(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every occurrence of a secret replaced by the mask."""
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


def scrubbed_exception(exc: BaseException, secrets: Sequence[str]) -> BaseException:
    """``exc`` itself when its message holds no secret; else a copy of it (same class) whose arguments are masked
    and which carries no traceback, to hand to Celery (its result backend and logs) in its place."""
    if not secrets or not any(secret in str(exc) or secret in repr(exc.args) for secret in secrets):
        return exc
    clone = copy.copy(exc)
    clone.args = tuple(scrub(arg, secrets) if isinstance(arg, str) else arg for arg in exc.args)
    clone.__traceback__ = clone.__cause__ = clone.__context__ = None
    clone.__suppress_context__ = True
    if any(secret in str(clone) for secret in secrets):  # a __str__ of its own: say only what it was
        return MaskedFailure(f"{type(exc).__module__}.{type(exc).__qualname__}: {scrub(str(exc), secrets)}")
    return clone
