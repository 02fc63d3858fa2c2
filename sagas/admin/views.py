"""The operator's actions in the admin: a confirmation page asking for a reason, then the service call,
recorded as a SagaEvent (actor, reason) and a Django LogEntry. Also the health page."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.admin import ModelAdmin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

import sagas
from sagas.admin import charts
from sagas.admin.common import number_param
from sagas.admin.forms import ReasonForm, ResolveForm, SignalForm
from sagas.health import MAX_WINDOW_HOURS, activity, durations, health_report
from sagas.models import SagaRun
from sagas.selectors import stuck
from sagas.services.compensation import pivot_passed
from sagas.services.forward import failed_forward
from sagas.states import RunStatus, StepStatus


def may(request: HttpRequest, action: str) -> bool:
    """Whether the user has the permission of an operator action ("retry", "resolve", "cancel" or "signal")."""
    return bool(request.user.has_perm(f"sagas.{action}_sagarun"))


@dataclass(frozen=True)
class Action:
    name: str  # retry | resolve | cancel
    verb: str
    explanation: str

    def perform(self, run: SagaRun, request: HttpRequest, data: dict[str, Any]) -> SagaRun:
        actor = request.user.get_username()
        if self.name == "retry":
            return sagas.retry(run.pk, reason=data["reason"], actor=actor)
        if self.name == "signal":
            return sagas.signal(run.pk, data["name"], data["data"], actor=actor, reason=data.get("reason") or "")
        if self.name == "resolve":
            output = data.get("output")
            return sagas.resolve(run.pk, step=data["step"], reason=data["reason"], actor=actor, output=output)
        return sagas.cancel(run.pk, reason=data["reason"], actor=actor)


ACTIONS = {
    "retry": Action(
        "retry",
        "Retry",
        "Re-runs what gave up, with a fresh attempt budget: the compensations that failed, or the step that "
        "failed after the pivot (the run then goes on forward). A stuck or parked run is re-driven from its "
        "recorded state.",
    ),
    "resolve": Action(
        "resolve",
        "Resolve",
        "Records that a person did by hand what the step gave up on. A failed compensation: its effect was "
        "undone, and the run ends compensated once no failed compensation is left. A step that failed after "
        "the pivot: it was done, with the output you give, and the run goes on forward. Nothing is called: do "
        "it first.",
    ),
    "signal": Action(
        "signal",
        "Signal",
        "Delivers the signal a Wait step waits for: its data becomes the step's output and the run goes on.",
    ),
    "cancel": Action(
        "cancel",
        "Cancel",
        "Stops the run: no further step starts and what completed is compensated. A pending run ends cancelled.",
    ),
}


def available_actions(model_admin: ModelAdmin[SagaRun], request: HttpRequest, run: SagaRun) -> list[Action]:
    """The actions this person may take on this run, in its present state."""
    found = []
    if may(request, "retry") and (
        run.status == RunStatus.FAILED or run.parked_reason or stuck(SagaRun.objects.filter(pk=run.pk)).exists()
    ):
        found.append(ACTIONS["retry"])
    if may(request, "resolve") and run.status == RunStatus.FAILED and resolvable_steps(run):
        found.append(ACTIONS["resolve"])
    if may(request, "cancel") and run.status in (RunStatus.PENDING, RunStatus.EXECUTING) and not past_pivot(run):
        found.append(ACTIONS["cancel"])
    return found


def failed_compensations(run: SagaRun) -> list[str]:
    return list(
        run.steps.filter(status=StepStatus.COMPENSATION_FAILED).order_by("index").values_list("name", flat=True)
    )


def past_pivot(run: SagaRun) -> bool:
    """Whether a pivot of the run succeeded: it only goes forward, so it cannot be cancelled."""
    return pivot_passed(run, list(run.steps.all()), None)


def waiting_signals(run: SagaRun) -> list[str]:
    """The signals the run waits for now: its Wait steps that are ``waiting`` (read from its stored definition,
    so the page works without the saga's class)."""
    if run.status != RunStatus.EXECUTING:
        return []
    signals = {s["name"] for s in run.definition.spec["steps"] if s.get("waits_for", {}).get("signal")}
    waiting = run.steps.filter(status=StepStatus.WAITING, name__in=signals).order_by("index")
    return list(waiting.values_list("name", flat=True))


def signal_form(request: HttpRequest, run: SagaRun) -> SignalForm | None:
    """The run page's signal form, when the run waits for a signal and the person may send one."""
    signals = waiting_signals(run)
    return SignalForm(signals=signals) if signals and may(request, "signal") else None


def failed_after_pivot(run: SagaRun) -> list[str]:
    """The steps of a run that failed after its pivot, which a person retries or resolves forward."""
    steps = list(run.steps.order_by("index"))
    if not failed_forward(run, steps, None):
        return []
    return [s.name for s in steps if s.status == StepStatus.FAILED]


def resolvable_steps(run: SagaRun) -> list[str]:
    """What a resolve may name on this run: its failed compensations, or its steps that failed after the pivot."""
    return failed_compensations(run) or failed_after_pivot(run)


def run_action_view(
    model_admin: ModelAdmin[SagaRun], request: HttpRequest, object_id: str, action_name: str
) -> HttpResponse:
    """GET: the confirmation page. POST: do it, with the reason, as the person logged in."""
    action = ACTIONS[action_name]
    if not may(request, action.name):
        raise PermissionDenied
    try:
        run = get_object_or_404(SagaRun, pk=object_id)
    except ValidationError as exc:  # not a run id at all
        raise Http404(f"No saga run with id {object_id!r}.") from exc
    # What a resolve names: the failed compensations, else the steps that failed after the pivot (forward).
    steps = failed_compensations(run) if action.name == "resolve" else []
    forward_steps = failed_after_pivot(run) if action.name == "resolve" and not steps else []
    steps, forward = steps or forward_steps, bool(forward_steps)

    def make_form(data: Any = None) -> forms.Form:
        if action.name == "signal":
            return SignalForm(data, signals=waiting_signals(run))
        return ResolveForm(data, steps=steps, forward=forward) if action.name == "resolve" else ReasonForm(data)

    form = make_form(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            run = action.perform(run, request, form.cleaned_data)
        except sagas.InvalidPayload as exc:
            # The service refused a value it was given (data or output too large, against the Wait's schema, shadowing
            # a payload key; a reason): the error of the field that held it, named as the form names it.
            form.add_error(exc.field if exc.field in form.fields else None, str(exc))
        except sagas.SagaError as exc:
            form.add_error(None, str(exc))
        else:
            model_admin.log_change(request, run, _change_message(action, form.cleaned_data))
            model_admin.message_user(request, f"{action.verb} of run {run.pk} recorded; it is now {run.status}.")
            return HttpResponseRedirect(reverse("admin:sagas_sagarun_change", args=[run.pk]))
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": SagaRun._meta,
        "title": f"{action.verb} saga run {run.pk}",
        "action": action,
        "runs": [run],
        "form": form,
        "run": run,
        "bulk": False,
    }
    return TemplateResponse(request, "admin/sagas/confirm_action.html", context)


def _change_message(action: Action, data: dict[str, Any]) -> str:
    """The admin log's line: "Retry: <reason>", "Signal approved: <reason>" (a signal's reason may be empty)."""
    head = f"{action.verb} {data['name']}" if action.name == "signal" else action.verb
    return f"{head}: {data['reason']}" if data.get("reason") else head


def bulk_action(
    model_admin: ModelAdmin[SagaRun], request: HttpRequest, queryset: QuerySet[SagaRun], action_name: str
) -> HttpResponse | None:
    """An admin action over selected runs: a confirmation page with the reason, then a count of outcomes.
    Resolving in bulk resolves every failed compensation of each selected run."""
    action = ACTIONS[action_name]
    runs = list(queryset.order_by("-created_at"))
    form = ReasonForm(request.POST if "apply" in request.POST else None)
    if "apply" in request.POST and form.is_valid():
        _apply_to_each(model_admin, request, runs, action, form.cleaned_data["reason"])
        return None  # back to the list
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": SagaRun._meta,
        "title": f"{action.verb} {len(runs)} saga run(s)",
        "action": action,
        "runs": runs,
        "form": form,
        "bulk": True,
        "action_checkbox_name": ACTION_CHECKBOX_NAME,
    }
    return TemplateResponse(request, "admin/sagas/confirm_action.html", context)


def _perform_one(action: Action, run: SagaRun, request: HttpRequest, reason: str) -> SagaRun:
    if action.name != "resolve":
        return action.perform(run, request, {"reason": reason})
    steps = failed_compensations(run)
    if not steps:
        raise sagas.InvalidTransition(f"Saga run {run.pk} is {run.status}: no failed compensation to resolve.")
    for step in steps:
        run = action.perform(run, request, {"step": step, "reason": reason})
    return run


def _apply_to_each(
    model_admin: ModelAdmin[SagaRun], request: HttpRequest, runs: list[SagaRun], action: Action, reason: str
) -> None:
    done, refused = 0, []
    for run in runs:
        try:
            updated = _perform_one(action, run, request, reason)
        except sagas.SagaError as exc:
            refused.append(str(exc))
            continue
        model_admin.log_change(request, updated, f"{action.verb}: {reason}")
        done += 1
    if done:
        model_admin.message_user(request, f"{action.verb}: {done} of {len(runs)} run(s) done.", messages.SUCCESS)
    if refused:
        model_admin.message_user(
            request,
            f"{action.verb}: {len(refused)} of {len(runs)} run(s) refused. " + " ".join(refused[:5]),
            messages.WARNING,
        )


def _window_hours(request: HttpRequest) -> int | None:
    """The window asked for in ``?hours=``: whole hours from 1 to a year; anything else (0.5, nan, 1e10, words,
    thousands of digits) falls back to the default window, with a message."""
    refused = (
        f"hours must be a number above 0 and at most {MAX_WINDOW_HOURS}, in whole hours; showing the default window."
    )
    return number_param(request, "hours", low=1, high=MAX_WINDOW_HOURS, refused=refused)


def health_view(model_admin: ModelAdmin[SagaRun], request: HttpRequest) -> HttpResponse:
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    hours = _window_hours(request)
    now = timezone.now()
    report = health_report(window_hours=hours, now=now)
    runs = activity(since=report.since, now=now)
    took = durations(since=report.since)
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": SagaRun._meta,
        "title": "Saga health",
        "report": report,
        "windows": [1, 6, 24, 24 * 7],
        "activity_unit": "day" if runs.period.days else "hour",
        "activity_chart": charts.activity_svg(runs),
        "activity_rows": [(charts.period_label(p, runs.period), p) for p in runs.periods if p.started],
        "durations_chart": charts.durations_svg(took),
        "duration_rows": [(charts.duration_label(b), b.runs) for b in took],
    }
    return TemplateResponse(request, "admin/sagas/health.html", context)
