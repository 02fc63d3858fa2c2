"""Masks secrets in payloads and outputs before a person sees them (SAGAS["MASKED_KEYS"])."""

from __future__ import annotations

from typing import Any

from sagas.conf import sagas_settings

MASK = "••••••"


def is_masked_key(key: object, patterns: list[str] | None = None) -> bool:
    """Whether values under ``key`` are secrets: it contains one of SAGAS["MASKED_KEYS"], in any case."""
    lowered = str(key).lower()
    return any(p.lower() in lowered for p in (patterns if patterns is not None else sagas_settings.MASKED_KEYS))


def masked(value: Any, patterns: list[str] | None = None) -> Any:
    """A copy of ``value`` in which every dict value under a key matching a pattern is replaced by a mask."""
    patterns = [p.lower() for p in (patterns if patterns is not None else sagas_settings.MASKED_KEYS)]
    if isinstance(value, dict):
        return {key: MASK if is_masked_key(key, patterns) else masked(item, patterns) for key, item in value.items()}
    if isinstance(value, list):
        return [masked(item, patterns) for item in value]
    return value
