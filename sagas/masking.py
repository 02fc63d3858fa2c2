"""Masks secrets in payloads and outputs before a person sees them (SAGAS["MASKED_KEYS"])."""

from __future__ import annotations

from typing import Any

from sagas.conf import sagas_settings

MASK = "••••••"


def masked(value: Any, patterns: list[str] | None = None) -> Any:
    """A copy of ``value`` in which every dict value under a key matching a pattern is replaced by a mask."""
    patterns = [p.lower() for p in (patterns if patterns is not None else sagas_settings.MASKED_KEYS)]
    if isinstance(value, dict):
        return {
            key: MASK if any(p in str(key).lower() for p in patterns) else masked(item, patterns)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [masked(item, patterns) for item in value]
    return value
