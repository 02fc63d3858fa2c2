"""Pieces every saga admin page uses: read-only rows, JSON shown readably, status badges."""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString

from sagas.admin.graph import FILL

RUN_COLOURS = {
    "pending": "#e5e7eb",
    "executing": "#fde68a",
    "completed": "#bbf7d0",
    "compensating": "#fed7aa",
    "compensated": "#bfdbfe",
    "timeout": "#fdba74",
    "failed": "#ef4444",
    "cancelled": "#f3f4f6",
}


def pretty_json(value: Any) -> SafeString:
    return format_html('<pre class="saga-json">{}</pre>', json.dumps(value, indent=2, sort_keys=True, default=str))


def badge(status: str, *, step: bool = False) -> SafeString:
    colour = FILL.get(status, "#fff") if step else RUN_COLOURS.get(status, "#fff")
    return format_html('<span class="saga-badge saga-{}" style="background:{}">{}</span>', status, colour, status)


class ReadOnlyAdminMixin:
    """Machine-written rows: visible to staff with the view permission, changed only by the framework."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
