"""Pieces every saga admin page uses: read-only rows, checked input, JSON shown readably, status badges."""

from __future__ import annotations

import json
from datetime import MAXYEAR, MINYEAR
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils.html import format_html
from django.utils.safestring import SafeString

from sagas.admin.graph import FILL
from sagas.numbers import whole_number

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


def number_param(request: HttpRequest, name: str, *, low: int, high: int, refused: str = "") -> int | None:
    """Query parameter ``name`` as a whole number from ``low`` to ``high``; None when it is absent, empty or not
    one. A value the page cannot use is ignored, as Django's changelist drops a filter value it cannot apply, not
    answered with a 400: ``refused`` is the warning that says so (empty: ignored quietly, as a poll does, whose
    message would show on the person's next page)."""
    raw = request.GET.get(name, "")
    if raw == "":
        return None
    try:
        return whole_number(raw, low=low, high=high)
    except ValueError:
        if refused:
            messages.warning(request, refused)
        return None


# The parts of a date hierarchy's period. Django reads them with int() and passes them to datetime(), catching only
# its ValueError: a year of twenty digits raises OverflowError, and so does the end of a period in the year 9999
# (as would the start of one in year 1 in a time zone ahead of UTC). So a year one off either end of datetime's.
DATE_PARTS = {"year": (MINYEAR + 1, MAXYEAR - 1), "month": (1, 12), "day": (1, 31)}


def changelist_problem(request: HttpRequest, date_hierarchy: str | None) -> str:
    """What in a changelist's query Django would pass on unchecked, to fail as a 500 (empty: nothing)."""
    for name, values in request.GET.lists():
        if "\x00" in name or any("\x00" in value for value in values):
            return f"{name!r} holds a NUL character (\\u0000), which PostgreSQL text cannot hold."
    for part, (low, high) in DATE_PARTS.items():
        name = f"{date_hierarchy}__{part}"
        for value in request.GET.getlist(name) if date_hierarchy else []:
            try:
                whole_number(value, low=low, high=high)
            except ValueError as exc:
                return f"{name}: {exc}"
    return ""


class ConsoleAdmin(admin.ModelAdmin):
    """A model admin of the console. A changelist query or a selection of rows that Django would pass on unchecked,
    to fail as a 500, is refused as Django refuses a filter value it cannot apply: back to the list."""

    def get_changelist_instance(self, request: HttpRequest) -> ChangeList:
        problem = changelist_problem(request, self.date_hierarchy)
        if problem:
            raise IncorrectLookupParameters(problem)  # Django's changelist answers it: the list again, with ?e=1
        return super().get_changelist_instance(request)

    def response_action(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        # Django filters by the selected ids unchecked: an id that is not one raises ValidationError.
        pk = self.model._meta.pk
        assert pk is not None
        try:
            for value in request.POST.getlist(ACTION_CHECKBOX_NAME):
                pk.to_python(value)
        except ValidationError:
            what = self.model._meta.verbose_name
            refused = f"Nothing was done: the selection holds a value that is not the id of a {what}."
            self.message_user(request, refused, messages.WARNING)
            return HttpResponseRedirect(request.get_full_path())
        return super().response_action(request, queryset)
