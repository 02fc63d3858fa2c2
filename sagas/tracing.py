"""OpenTelemetry spans of runs, attempts and receivers, and the run's trace context carried in saga messages."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from celery.exceptions import Retry
from celery.signals import before_task_publish, task_postrun, task_prerun
from django.core.signals import setting_changed

from sagas.conf import sagas_settings

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, Status, StatusCode
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError:  # the tracing extra is not installed: tracing stays off (system check sagas.E006 says so)
    INSTALLED = False
else:
    INSTALLED = True
    # What saga messages and a run's SagaStarted event carry of a trace context: the W3C traceparent and tracestate,
    # whatever propagator the project configured; never baggage, which anyone who can publish to the broker could
    # plant for it to travel through the run and its child runs (docs/tracing.md).
    _CARRIED = TraceContextTextMapPropagator()

if TYPE_CHECKING:
    from sagas.definitions import StepContext

# Span names (docs/tracing.md).
START = "saga.start"
STEP = "saga.step"
COMPENSATE = "saga.compensate"
RECEIVE = "saga.receive"

# Span attributes.
RUN_ID = "saga.run_id"
NAME = "saga.name"
VERSION = "saga.version"
STEP_NAME = "saga.step"
ATTEMPT = "saga.attempt"
OUTCOME = "saga.outcome"
RECEIVER = "saga.receiver"
TOPIC = "saga.topic"
MESSAGE_ID = "saga.message_id"

# Where a run's trace context is kept: in its SagaStarted event's data, under this key (docs/event-log.md).
STORED_KEY = "trace_context"

# Messages of these tasks carry the run's trace context: the steps, compensations and receivers (saga.*,
# sagas.receiver.*) and the framework's own tasks (errbacks, checks), never a project's other tasks.
_SAGA_TASKS = ("saga.", "sagas.")

Function = TypeVar("Function", bound=Callable[..., Any])

# Whether spans are made: SAGAS["TRACING"] and the API importable. None: not read yet (read once, again after a
# change of the SAGAS setting), so the hot path pays one global read when tracing is off.
_on: bool | None = None

# The header that names the run whose trace context a message carries.
RUN_HEADER = "sagas_trace_run"

# W3C baggage's header, which no saga message carries (docs/tracing.md).
BAGGAGE_HEADER = "baggage"


@dataclass(frozen=True, slots=True)
class RunContext:
    """The trace context of a run (its saga.start span's); ``run_id`` None while the run is being started."""

    run_id: str | None
    context: Context


# The run this code works for: every saga message published meanwhile carries its context, so every span of a run
# is a child of its saga.start span, whichever process publishes (docs/tracing.md).
_run: ContextVar[RunContext | None] = ContextVar("sagas_run_trace_context", default=None)

# What a worker attached for the task it runs, by task id: undone when the task ends (retried or not).
_entered: dict[str, tuple[Token[RunContext | None], Token[Context]]] = {}


def enabled() -> bool:
    """Whether spans are made and trace context is carried: ``SAGAS["TRACING"]`` with the tracing extra installed."""
    global _on
    if _on is None:
        _on = bool(sagas_settings.TRACING) and INSTALLED
        if _on:
            _connect()
    return _on


def _reset(*, setting: str, **kwargs: Any) -> None:
    global _on
    if setting == "SAGAS":
        _on = None


setting_changed.connect(_reset)


def _connect() -> None:
    # Only once tracing is on: a process with tracing off gets no handler on Celery's publishing and task signals.
    before_task_publish.connect(_inject, weak=False, dispatch_uid="sagas.tracing.inject")
    task_prerun.connect(_enter, weak=False, dispatch_uid="sagas.tracing.enter")
    task_postrun.connect(_leave, weak=False, dispatch_uid="sagas.tracing.leave")


def _saga_task(name: object) -> bool:
    return isinstance(name, str) and name.startswith(_SAGA_TASKS)


class Traced:
    """One span of the framework, made current while it is open: ``identify`` names its run, ``ended`` records
    how it went (an exception escaping the ``with`` is recorded too)."""

    def __init__(self, name: str, attributes: dict[str, Any], *, run_context: bool) -> None:
        self._name, self._attributes, self._run_context = name, attributes, run_context
        self._span: Span | None = None
        self._manager: Any = None
        self._token: Token[RunContext | None] | None = None

    def __enter__(self) -> Traced:
        # A step's, compensation's or receiver's span is the child of its run's (saga.start); a start's is the child
        # of whatever span is current (a request's, or a parent run's step).
        run = None if self._run_context else _run.get()
        parent = run.context if run is not None else None
        self._manager = _tracer().start_as_current_span(
            self._name, context=parent, attributes=self._attributes, record_exception=False,
            set_status_on_exception=False,
        )  # fmt: skip
        self._span = self._manager.__enter__()
        if self._run_context:
            self._token = _run.set(RunContext(None, otel_context.get_current()))
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if exc is not None:
            self.failed(exc)
        if self._token is not None:
            _run.reset(self._token)
        self._manager.__exit__(kind, exc, tb)

    def identify(self, run_id: object) -> None:
        assert self._span is not None
        self._span.set_attribute(RUN_ID, str(run_id))

    def ended(self, outcome: str, exc: BaseException | None = None) -> None:
        assert self._span is not None
        self._span.set_attribute(OUTCOME, str(outcome))
        if exc is not None:
            self._record(exc)

    def failed(self, exc: BaseException) -> None:
        """An exception ended the span: a Celery retry (of a receiver) records the error it retries after."""
        assert self._span is not None
        if isinstance(exc, Retry):
            self._span.set_attribute(OUTCOME, "retry")
            if isinstance(exc.exc, BaseException):
                self._record(exc.exc)
            return
        self._span.set_attribute(OUTCOME, "failed")
        self._record(exc)

    def _record(self, exc: BaseException) -> None:
        assert self._span is not None
        self._span.record_exception(exc)
        self._span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))


class Untraced:
    """What a span is with tracing off: nothing."""

    def __enter__(self) -> Untraced:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def identify(self, run_id: object) -> None:
        return None

    def ended(self, outcome: str, exc: BaseException | None = None) -> None:
        return None


UNTRACED = Untraced()


def _tracer() -> trace.Tracer:
    return trace.get_tracer("sagas")


def starting(saga_name: str, version: int) -> Traced | Untraced:
    """The ``saga.start`` span of a run being started: the run's trace context while it is open."""
    if not enabled():
        return UNTRACED
    return Traced(START, {NAME: saga_name, VERSION: version}, run_context=True)


def attempt(name: str, ctx: StepContext, version: int) -> Traced | Untraced:
    """The span of one attempt of a step (``STEP``) or a compensation (``COMPENSATE``), child of its run's span."""
    if not enabled():
        return UNTRACED
    attributes = {
        RUN_ID: str(ctx.saga_id), NAME: ctx.saga_name, VERSION: version, STEP_NAME: ctx.step, ATTEMPT: ctx.attempt,
    }  # fmt: skip
    return Traced(name, attributes, run_context=False)


def receiving(receiver: str, message: Any, attempt: int) -> Traced | Untraced:
    """The ``saga.receive`` span of one delivery of a saga message (a ``SagaMessage``) to a receiver."""
    if not enabled():
        return UNTRACED
    attributes = {
        RUN_ID: message.run_id, NAME: message.saga_name, STEP_NAME: message.step or "", ATTEMPT: attempt,
        RECEIVER: receiver, TOPIC: message.topic, MESSAGE_ID: message.id,
    }  # fmt: skip
    return Traced(RECEIVE, attributes, run_context=False)


def stored() -> dict[str, Any]:
    """What a run's SagaStarted event keeps of its trace context (``{STORED_KEY: {...}}``: its ``traceparent`` and
    ``tracestate``), or nothing."""
    if not enabled():
        return {}
    run = _run.get()
    if run is None:
        return {}
    carrier: dict[str, str] = {}
    _CARRIED.inject(carrier, context=run.context)
    return {STORED_KEY: carrier} if carrier else {}


def bound(publish: Function, run_id: object, stored_context: Callable[[], Mapping[str, str]]) -> Function:
    """``publish`` (of messages for run ``run_id``) as it is with tracing off; with it on, ``publish`` run under that
    run's trace context: the one in force now when it is that run's, or else (a reaper's re-drive, an operator's
    action, a child run telling its parent) the one the run stored at its start (``stored_context()``, read only
    then), so the messages it publishes join the run's trace."""
    if not enabled():
        return publish
    run_key = str(run_id)
    captured = _run.get()
    if captured is not None and captured.run_id not in (None, run_key):
        captured = None  # another run's (a parent's or a child's)

    @functools.wraps(publish)
    def traced(*args: Any, **kwargs: Any) -> Any:
        if captured is not None:
            run: RunContext | None = RunContext(run_key, captured.context)
        else:
            context = _valid(_CARRIED.extract(dict(stored_context())))  # its traceparent and tracestate alone
            run = RunContext(run_key, context) if context is not None else None
        token = _run.set(run)
        try:
            return publish(*args, **kwargs)
        finally:
            _run.reset(token)

    return traced  # type: ignore[return-value]


def _valid(context: Context) -> Context | None:
    return context if trace.get_current_span(context).get_span_context().is_valid else None


def _inject(sender: object = None, headers: dict[str, Any] | None = None, **kwargs: Any) -> None:
    """Celery's ``before_task_publish``: a saga message published for a run carries the run's trace context as
    message headers: W3C ``traceparent`` and ``tracestate`` only, whatever propagator the project configured."""
    if headers is None or not _saga_task(sender) or not enabled():
        return
    # Celery's retry copies every header of the message it retries: a baggage planted there goes no further.
    headers.pop(BAGGAGE_HEADER, None)
    run = _run.get()
    if run is not None:
        _CARRIED.inject(headers, context=run.context)
        if run.run_id is not None:
            headers[RUN_HEADER] = run.run_id


def _enter(task_id: str | None = None, task: Any = None, **kwargs: Any) -> None:
    """Celery's ``task_prerun``: a saga task works under the trace context its message carries, read from its
    ``traceparent`` and ``tracestate`` alone (custom message headers are attributes of ``task.request``): a
    ``baggage`` header is not in force while it runs."""
    if task is None or task_id is None or not _saga_task(getattr(task, "name", None)) or not enabled():
        return
    fields = _CARRIED.fields
    carrier = {field: value for field in fields if isinstance(value := getattr(task.request, field, None), str)}
    context = _valid(_CARRIED.extract(carrier)) if carrier else None
    if context is not None:
        run_id = getattr(task.request, RUN_HEADER, None)
        run = RunContext(run_id if isinstance(run_id, str) else None, context)
        _entered[task_id] = (_run.set(run), otel_context.attach(context))


def _leave(task_id: str | None = None, **kwargs: Any) -> None:
    """Celery's ``task_postrun`` (sent however the task ended, retried included): undo what ``_enter`` did."""
    entered = _entered.pop(task_id, None) if task_id is not None else None
    if entered is not None:
        token, attached = entered
        otel_context.detach(attached)
        _run.reset(token)
