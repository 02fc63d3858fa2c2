"""The run page, live: its context, its version, and the JSON view that sends its parts while the run goes on."""

from __future__ import annotations

import hashlib
from typing import Any

from django.contrib.admin import ModelAdmin
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.cache import get_conditional_response, patch_cache_control
from django.utils.http import urlencode

from sagas.admin import views
from sagas.admin.common import number_param
from sagas.admin.run_page import in_flight, run_page_context
from sagas.models import SagaRun
from sagas.selectors import stuck
from sagas.states import FINISHED_RUN_STATES

# The highest seq an event can have: SagaEvent.seq is a PositiveIntegerField, a PostgreSQL integer.
MAX_SEQ = 2**31 - 1

# The parts of the run page that change while a run goes on, each one template the page includes.
PARTS = ("actions", "findings", "facts", "signal", "error", "graph", "steps", "timeline")


def part_template(name: str) -> str:
    return f"admin/sagas/sagarun/parts/{name}.html"


def run_version(run: SagaRun) -> str:
    """What the page shows changes only when this does: an event (``lock_version`` is the seq of the run's latest
    one), an attempt starting or ending (the steps' leases: an attempt's start is recorded with its outcome), or
    the run falling stuck (which offers Retry). Cheap to compute, so a poll that finds nothing new costs little."""
    steps = list(run.steps.all())
    holders = sorted(f"{name}:{h.attempt}:{h.task_id}" for name, h in in_flight(run, steps).items())
    leases = hashlib.sha256("\n".join(holders).encode()).hexdigest()[:12] if holders else "-"
    is_stuck = stuck(SagaRun.objects.filter(pk=run.pk)).exists()
    return f"{run.lock_version}.{leases}.{int(is_stuck)}"


def run_context(
    model_admin: ModelAdmin[SagaRun],
    request: HttpRequest,
    run: SagaRun,
    events_before: int | None,
    version: str | None = None,
) -> dict[str, Any]:
    """What the run's page shows this person, and what its live updates start from: the version is read before
    the page, so a change made while the page is read shows at the next poll rather than never."""
    version = version if version is not None else run_version(run)
    context = run_page_context(run, events_before=events_before)
    actions = views.available_actions(model_admin, request, run)
    form = views.signal_form(request, run)
    query = urlencode({"events_before": events_before}) if events_before is not None else ""
    live_url = reverse("admin:sagas_sagarun_live", args=[run.pk])
    return {
        **context,
        "actions_available": actions,
        "signal_form": form,
        "live_url": f"{live_url}?{query}" if query else live_url,
        "live_version": version,
        "live_finished": run.status in FINISHED_RUN_STATES,
        # The parts holding buttons and forms are replaced only when these change, not to lose what a person types.
        "live_keys": {
            "actions": ",".join(action.name for action in actions),
            "signal": ",".join(views.waiting_signals(run)) if form is not None else "",
        },
    }


def render_parts(request: HttpRequest, context: dict[str, Any]) -> dict[str, str]:
    """The page's changing parts, rendered by the templates the page itself includes."""
    return {name: render_to_string(part_template(name), context, request) for name in PARTS}


def events_before_param(request: HttpRequest, *, warn: bool = True) -> int | None:
    """The page of the timeline asked for in ``?events_before=`` (None: the latest events). A value that is not a
    seq shows the latest events, with a warning when ``warn``."""
    refused = f"?events_before= must be an event's number, from 1 to {MAX_SEQ}; showing the latest events."
    return number_param(request, "events_before", low=1, high=MAX_SEQ, refused=refused if warn else "")


def live_view(model_admin: ModelAdmin[SagaRun], request: HttpRequest, object_id: str) -> HttpResponse:
    """GET: the run's status, version and the page's parts as JSON; 304 when ``If-None-Match`` names the version
    the page already shows. Whoever may view the run may poll it; it shows nothing the page does not."""
    run = model_admin.get_object(request, object_id)
    if run is None:
        raise Http404(f"No saga run with id {object_id!r}.")
    if not model_admin.has_view_permission(request, run):
        raise PermissionDenied
    version = run_version(run)
    unchanged = get_conditional_response(request, etag=f'"{version}"')
    if unchanged is not None:
        response: HttpResponse = unchanged
    else:
        # Quietly: a poll's warning would show on the person's next page, not on this one.
        events_before = events_before_param(request, warn=False)
        context = run_context(model_admin, request, run, events_before, version)
        response = JsonResponse(
            {
                "run": str(run.pk),
                "status": run.status,
                "finished": context["live_finished"],
                "version": context["live_version"],
                "keys": context["live_keys"],
                "parts": render_parts(request, context),
            }
        )
    response["ETag"] = f'"{version}"'
    # Each poll asks the server: a cached answer would show an old state of the run as the present one.
    patch_cache_control(response, private=True, no_cache=True)
    return response
