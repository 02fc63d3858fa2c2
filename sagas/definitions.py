"""Declaring sagas in plain Python: Saga, Step and StepContext (no ORM here)."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from django.apps import apps
from django.core.exceptions import AppRegistryNotReady, ImproperlyConfigured
from django.utils import timezone

from sagas import registry, schemas
from sagas.conf import sagas_settings
from sagas.exceptions import InvalidDefinition
from sagas.masking import is_masked_key
from sagas.retry import RetryPolicy

if TYPE_CHECKING:
    from sagas.models import SagaRun

# \Z, not $: "$" also matches before a trailing newline, which a name must not have.
STEP_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
SAGA_NAME = re.compile(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*\Z")
SERVICE_NAME = re.compile(r"^[A-Za-z0-9_.-]+\Z")


@dataclass(frozen=True, slots=True)
class StepContext:
    """What a step's action or compensation receives."""

    saga_id: uuid.UUID
    saga_name: str
    step: str
    payload: Mapping[str, Any]  # the start payload merged with the outputs of completed steps
    results: Mapping[str, Any]  # step name -> output, for every completed step
    idempotency_key: str  # "<saga_id>:<step>" (":compensate" appended for compensations), same on every attempt
    attempt: int  # 1-based
    result: Any = None  # in a compensation: the output of the forward step it undoes


StepFunction = Callable[[StepContext], Any]


# The longest timeout a declaration takes: a century, so a deadline (a start plus the timeout) always fits a date.
LONGEST_TIMEOUT = 100 * 365 * 24 * 3600


def positive_seconds(value: object) -> bool:
    """Whether ``value`` is a number of seconds above 0 and at most LONGEST_TIMEOUT (an int or a float, not a
    bool, not NaN)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= LONGEST_TIMEOUT


@dataclass(frozen=True, slots=True)
class SignalWait:
    """What a ``Wait`` step waits for: a signal of its name (``sagas.signal``), for ``timeout`` seconds at most,
    whose data matches ``schema`` (a pydantic model class or a JSON Schema dict, as ``Saga.payload_schema``)."""

    timeout: float | None = None
    schema: Any = None

    def problems(self) -> list[str]:
        problems = schemas.problems(self.schema, what="a Wait's schema")
        if self.timeout is not None and not positive_seconds(self.timeout):
            problems.append(
                "a Wait's timeout must be a positive number of seconds (at most a century) or None, "
                f"got {self.timeout!r}"
            )
        return problems

    def to_spec(self) -> dict[str, Any]:
        # The schema only where there is one: a Wait declared before schemas existed keeps its spec (and version).
        shape = {"schema": schemas.json_schema(self.schema)} if self.schema is not None else {}
        return {"signal": True, "timeout": self.timeout, **shape}


@dataclass(frozen=True, slots=True)
class ChildRun:
    """What a ``SubSaga`` step waits for: a run of ``saga`` it starts, with ``payload(ctx)`` (None: the parent's
    payload)."""

    saga: type[Saga]
    payload: Callable[[StepContext], Mapping[str, Any]] | None = None

    def problems(self) -> list[str]:
        problems = []
        if not (isinstance(self.saga, type) and issubclass(self.saga, Saga)) or self.saga.abstract:
            problems.append(f"a SubSaga runs a registered sagas.Saga subclass, got {self.saga!r}")
        if self.payload is not None and not callable(self.payload):
            problems.append(f"a SubSaga's payload must be a function of the context or None, got {self.payload!r}")
        return problems

    def to_spec(self) -> dict[str, Any]:
        saga = self.saga if isinstance(self.saga, type) and issubclass(self.saga, Saga) else None
        return {
            "saga": saga.name if saga else repr(self.saga),
            "version": saga.version if saga else None,
            "payload": _qualified_name(self.payload) if self.payload else None,
        }


@dataclass(frozen=True, slots=True)
class Step:
    """One local transaction of a saga and the compensation that undoes it."""

    action: StepFunction
    compensation: StepFunction | None = None
    _: KW_ONLY
    name: str = ""
    service: str | None = None  # the remote service it calls (for logs, breakers, the admin)
    timeout: float | None = None  # seconds; becomes the task's soft time limit
    # Seconds the action waits for its service's open circuit before failing with circuit_open (None:
    # SAGAS["CIRCUIT_WAIT"]). Refused calls are not attempts; a compensation waits for its circuit without limit.
    circuit_wait: float | None = None
    retry: RetryPolicy | None = None  # None: SAGAS["DEFAULT_RETRY"]
    compensation_retry: RetryPolicy | None = None  # None: SAGAS["DEFAULT_COMPENSATION_RETRY"]
    depends_on: Sequence[str] = field(default=())  # names of earlier steps; stored as a tuple
    priority: int = 0  # higher compensates first among completed steps
    # A step without a compensation says why: it cannot be undone (a pivot, such as telling the customer: only
    # after every compensable step), or it changes nothing (a check). sagas.testing.assert_compensable asks.
    irreversible: bool = False
    read_only: bool = False
    # Set by Wait and SubSaga: the step waits (status ``waiting``, no worker held) for a signal or a child run.
    waits_for: SignalWait | ChildRun | None = None

    def __post_init__(self) -> None:
        # Only normalise here; what is wrong is reported by problems(), when the saga class is defined,
        # so the message can name the saga as well as the step.
        object.__setattr__(self, "name", self.name or getattr(self.action, "__name__", ""))
        depends_on = (self.depends_on,) if isinstance(self.depends_on, str) else tuple(self.depends_on)
        object.__setattr__(self, "depends_on", depends_on)

    def problems(self) -> list[str]:
        """What is wrong with this step, in words; empty when it is usable."""
        problems = []
        if not callable(self.action):
            problems.append(f"action must be callable, got {self.action!r}")
        if self.compensation is not None and not callable(self.compensation):
            problems.append(f"compensation must be callable or None, got {self.compensation!r}")
        if not STEP_NAME.match(self.name):
            problems.append(
                f"name {self.name!r} is not a valid identifier; pass name='...' (letters, digits, underscore)"
            )
        if self.timeout is not None and not positive_seconds(self.timeout):
            problems.append(f"timeout must be a positive number of seconds (at most a century), got {self.timeout!r}")
        wait = self.circuit_wait
        if wait is not None and (not isinstance(wait, int | float) or isinstance(wait, bool) or wait < 0):
            problems.append(f"circuit_wait must be a number of seconds >= 0, got {self.circuit_wait!r}")
        for attr in ("retry", "compensation_retry"):
            policy = getattr(self, attr)
            if policy is not None and not isinstance(policy, RetryPolicy):
                problems.append(f"{attr} must be a sagas.RetryPolicy, got {policy!r}")
            elif policy is not None:
                problems += [f"{attr}: {problem}" for problem in policy.problems()]
        if not isinstance(self.priority, int) or isinstance(self.priority, bool):
            problems.append(f"priority must be an int, got {self.priority!r}")
        if self.service is not None and (not isinstance(self.service, str) or not SERVICE_NAME.match(self.service)):
            problems.append(f"service must be a name of letters, digits, '.', '_' or '-', got {self.service!r}")
        for flag in ("irreversible", "read_only"):
            value = getattr(self, flag)
            if not isinstance(value, bool):
                problems.append(f"{flag} must be True or False, got {value!r}")
            elif value and self.compensation is not None:
                problems.append(f"{flag}=True says the step has nothing to compensate, yet it has a compensation")
        if self.irreversible is True and self.read_only is True:
            problems.append("a step is irreversible (its effect stays) or read_only (it has none), not both")
        if self.waits_for is not None:
            problems += self.waits_for.problems()
        return problems

    def circuit_wait_seconds(self) -> float:
        """How long the action waits for its service's open circuit: ``circuit_wait``, else SAGAS["CIRCUIT_WAIT"]."""
        return float(self.circuit_wait if self.circuit_wait is not None else sagas_settings.CIRCUIT_WAIT)

    def to_spec(self, index: int) -> dict[str, Any]:
        return {
            "index": index,
            "name": self.name,
            "action": _qualified_name(self.action),
            "compensation": _qualified_name(self.compensation) if self.compensation else None,
            "service": self.service,
            "timeout": self.timeout,
            "retry": self.retry.to_spec() if self.retry else None,
            "compensation_retry": self.compensation_retry.to_spec() if self.compensation_retry else None,
            "depends_on": list(self.depends_on),
            "priority": self.priority,
            # Only when set: a spec without them keeps the hash it had before they existed.
            **({"irreversible": True} if self.irreversible is True else {}),
            **({"read_only": True} if self.read_only is True else {}),
            **({"circuit_wait": self.circuit_wait} if self.circuit_wait is not None else {}),
            **({"waits_for": self.waits_for.to_spec()} if self.waits_for is not None else {}),
        }


def _await_signal(ctx: StepContext) -> None:
    """A Wait's action: never called, since its claim makes the step wait instead (sagas.services.waits)."""
    raise AssertionError(f"the Wait step {ctx.step!r} is not run as an action")


def _start_child(ctx: StepContext) -> None:
    """A SubSaga's action: never called, since its claim starts the child run instead."""
    raise AssertionError(f"the SubSaga step {ctx.step!r} is not run as an action")


def _undo_child(ctx: StepContext) -> None:
    """A SubSaga's compensation: never called, since its claim has the child undo its completed steps."""
    raise AssertionError(f"the SubSaga step {ctx.step!r} is not compensated by a function")


class Wait(Step):
    """A step that does nothing until ``sagas.signal(run_id, name, data)`` arrives; ``data`` becomes its output.

    While it waits the step is ``waiting`` and its run ``executing``: no worker is held. Past ``timeout`` seconds
    it fails like a step (the run compensates). It has no compensation of its own (docs/waits.md). ``schema`` (a
    pydantic model class or a JSON Schema dict) is what the signal's data must match: other data raises
    ``InvalidPayload`` and changes nothing, as does data over SAGAS["MAX_PAYLOAD_BYTES"] or setting a key of the
    run's start payload.
    """

    __slots__ = ()

    def __init__(
        self, name: str, *, timeout: float | None = None, schema: Any = None, depends_on: Sequence[str] = ()
    ) -> None:
        super().__init__(
            _await_signal, name=name, read_only=True, waits_for=SignalWait(timeout, schema), depends_on=depends_on
        )


class SubSaga(Step):
    """A step that starts a run of ``saga`` (once, with the parent's correlation id) and waits for it durably.

    ``payload``: a function of the step's context giving the child's payload (None: the parent's payload). The
    child ``completed``: the step succeeds with the child's merged outputs; ``compensated``, ``failed`` or
    ``cancelled``: the step fails. Undoing the step undoes the child's completed steps in the child's own order
    (docs/child-sagas.md).
    """

    __slots__ = ()

    def __init__(
        self,
        saga: type[Saga],
        *,
        name: str,
        payload: Callable[[StepContext], Mapping[str, Any]] | None = None,
        depends_on: Sequence[str] = (),
        priority: int = 0,
    ) -> None:
        super().__init__(
            _start_child,
            _undo_child,
            name=name,
            waits_for=ChildRun(saga, payload),
            depends_on=depends_on,
            priority=priority,
        )


class Saga:
    """Base class of every saga: subclasses declare ``steps`` and register themselves by ``name``.

    A subclass that only shares code with others sets ``abstract = True`` and is not registered.
    """

    name: ClassVar[str] = ""
    version: ClassVar[int] = 1
    timeout: ClassVar[float | None] = None  # saga deadline in seconds from start
    steps: ClassVar[Sequence[Step]] = ()
    searchable: ClassVar[Sequence[str]] = ()  # payload keys whose values the admin can search runs by
    # Eager dispatch (sagas/eager.py): True, False, or None for SAGAS["EAGER"]. Only a sequence runs eagerly.
    eager: ClassVar[bool | None] = None
    # What start() accepts: a pydantic model class or a JSON Schema dict (docs/payload-schemas.md); None: any object.
    payload_schema: ClassVar[Any] = None
    abstract: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("abstract", False):
            return
        cls.abstract = False
        cls.name = cls.__dict__.get("name") or _default_saga_name(cls)
        cls.steps = tuple(cls.steps)
        _validate(cls)
        registry.register(cls)

    @classmethod
    def step(cls, name: str) -> Step:
        """The step declared under ``name``."""
        for step in cls.steps:
            if step.name == name:
                return step
        raise KeyError(f"Saga {cls.name!r} v{cls.version} has no step {name!r}.")

    @classmethod
    def is_graph(cls) -> bool:
        """Whether the steps form an explicit dependency graph (some step declares ``depends_on``): its
        steps run as soon as their dependencies succeed, independent ones in parallel. Otherwise they
        run one after another, in the order declared."""
        return any(step.depends_on for step in cls.steps)

    @classmethod
    def is_eager(cls) -> bool:
        """Whether a worker runs this saga's next step itself after a success (see sagas.eager): its ``eager``,
        else ``SAGAS["EAGER"]``; never for a graph, whose steps start when their dependencies succeed."""
        eager = sagas_settings.EAGER if cls.eager is None else cls.eager
        return bool(eager) and not cls.is_graph()

    @classmethod
    def dependencies(cls) -> dict[str, frozenset[str]]:
        """Each step's direct dependencies: its ``depends_on`` when any step of the saga declares one (an
        explicit graph, where a step without ``depends_on`` depends on nothing), else the step declared
        before it (a plain sequence)."""
        explicit = cls.is_graph()
        previous: list[str] = []
        graph = {}
        for step in cls.steps:
            graph[step.name] = frozenset(step.depends_on if explicit else previous[-1:])
            previous.append(step.name)
        return graph

    @classmethod
    def pivots(cls) -> frozenset[str]:
        """The names of the steps declared ``irreversible=True``: once one has succeeded the run only goes
        forward (docs/pivots.md)."""
        return frozenset(step.name for step in cls.steps if step.irreversible is True)

    @classmethod
    def ancestors(cls) -> dict[str, frozenset[str]]:
        """Each step's dependencies, direct and indirect."""
        closure: dict[str, frozenset[str]] = {}
        for name, direct in cls.dependencies().items():  # dependencies are declared first
            closure[name] = direct.union(*(closure[dep] for dep in direct))
        return closure

    @classmethod
    def spec(cls) -> dict[str, Any]:
        """The JSON description stored as this saga's definition row."""
        return {
            "name": cls.name,
            "version": cls.version,
            "timeout": cls.timeout,
            "steps": [step.to_spec(index) for index, step in enumerate(cls.steps)],
        }

    @classmethod
    def spec_hash(cls) -> str:
        canonical = json.dumps(cls.spec(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    @classmethod
    def start(
        cls,
        payload: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
        countdown: float | None = None,
        eta: datetime | None = None,
    ) -> SagaRun:
        """Store a new run and dispatch its steps once the surrounding transaction commits.

        Starting again with the same ``idempotency_key`` returns the existing run and dispatches nothing. With
        ``countdown`` (seconds) or ``eta`` (an aware datetime) the run stays ``pending`` until then: no step runs
        before it, and it can be cancelled meanwhile (docs/delayed-start.md).
        """
        start_at = start_time(countdown, eta, timeout=cls.timeout)
        if _run_starter is None:
            raise ImproperlyConfigured(
                "Saga.start() needs the sagas app to be ready: add 'sagas' to INSTALLED_APPS and call "
                "django.setup() (manage.py, the WSGI application and Celery's Django fix-up do) before starting runs."
            )
        return _run_starter(
            saga=cls, payload=payload, idempotency_key=idempotency_key, correlation_id=correlation_id, start_at=start_at
        )


def start_time(countdown: float | None, eta: datetime | None, *, timeout: float | None = None) -> datetime | None:
    """When a run asked to start later may start: ``eta``, or ``countdown`` seconds from now (None: at once).

    With the saga's ``timeout``, the run's deadline (its start, or now if that is past, plus ``timeout``) must be a
    time a run can hold too. Either past it is a ValueError naming what to change, not an OverflowError later.
    """
    if countdown is not None and eta is not None:
        raise ValueError("Saga.start() takes countdown or eta, not both.")
    now = timezone.now()
    # A day short of the last datetime (in UTC, now's zone), so the time can still be shown in any time zone (the
    # admin's TIME_ZONE). Seconds are compared as floats: timedelta(seconds=1e300) would overflow itself.
    latest = datetime.max.replace(tzinfo=now.tzinfo) - timedelta(days=1)
    if countdown is not None:
        if isinstance(countdown, bool) or not isinstance(countdown, int | float) or not countdown >= 0:
            raise ValueError(f"countdown must be a number of seconds >= 0, got {countdown!r}.")
        if countdown > (latest - now).total_seconds():
            raise ValueError(
                f"countdown must start the run by {latest:%Y-%m-%d} (UTC), the last day a run's times can hold; "
                f"{countdown!r} seconds from now is past it."
            )
        start, asked = now + timedelta(seconds=countdown), f"countdown {countdown!r}"
    elif eta is not None:
        if not isinstance(eta, datetime) or timezone.is_naive(eta):
            raise ValueError(f"eta must be a timezone-aware datetime, got {eta!r}.")
        if eta > latest:
            raise ValueError(
                f"eta must be by {latest:%Y-%m-%d} (UTC), the last day a run's times can hold, got {eta.isoformat()}."
            )
        start, asked = eta, f"eta {eta.isoformat()}"
    else:
        start, asked = None, "a start now"
    if timeout is not None and timeout > (latest - max(start or now, now)).total_seconds():
        raise ValueError(
            f"With {asked}, the run's deadline (its start plus the saga's timeout of {timeout:g}s) would fall past "
            f"{latest:%Y-%m-%d} (UTC), the last day a run's times can hold: start it sooner, or shorten the timeout."
        )
    return start


class RunStarter(Protocol):
    """What stores a new run and dispatches it: sagas.services.run_start."""

    def __call__(
        self,
        *,
        saga: type[Saga],
        payload: Mapping[str, Any] | None,
        idempotency_key: str | None,
        correlation_id: str | None,
        start_at: datetime | None,
    ) -> SagaRun: ...


# Installed by the app's ready() (sagas.apps): declarations sit below the ORM and the services that write runs,
# so they may not import them (docs/internals.md#layers).
_run_starter: RunStarter | None = None


def install_run_starter(starter: RunStarter) -> None:
    """Make ``Saga.start`` store and dispatch runs with ``starter``."""
    global _run_starter
    _run_starter = starter


def _qualified_name(func: Callable[..., Any]) -> str:
    module = getattr(func, "__module__", None) or "?"
    qualname = getattr(func, "__qualname__", None) or repr(func)
    return f"{module}.{qualname}"


def _default_saga_name(cls: type[Saga]) -> str:
    try:
        app_config = apps.get_containing_app_config(cls.__module__)
    except AppRegistryNotReady:
        app_config = None
    if app_config is None:  # defined before apps are loaded: the package that holds the module
        parts = cls.__module__.split(".")
        return f"{parts[-2] if len(parts) > 1 else parts[0]}.{cls.__name__}"
    return f"{app_config.label}.{cls.__name__}"


def _cycle_through(steps: Sequence[Step], start: str) -> list[str]:
    """A dependency path from ``start`` back to itself (as names), or [] when there is none."""
    depends_on = {step.name: step.depends_on for step in steps if isinstance(step, Step)}

    def walk(name: str, path: list[str]) -> list[str]:
        for dependency in depends_on.get(name, ()):
            if dependency == start:
                return [*path, dependency]
            if dependency not in path and dependency in depends_on:
                found = walk(dependency, [*path, dependency])
                if found:
                    return found
        return []

    return walk(start, [start])


def _validate(cls: type[Saga]) -> None:
    """Refuse a badly declared saga, listing every problem with the saga and step it concerns."""
    where = f"Saga {cls.__qualname__} ({cls.name!r})"
    problems = []
    if not SAGA_NAME.match(cls.name):
        problems.append(f"{where}: name must be dotted words of letters, digits and underscores")
    if not isinstance(cls.version, int) or isinstance(cls.version, bool) or cls.version < 1:
        problems.append(f"{where}: version must be an int >= 1, got {cls.version!r}")
    if cls.timeout is not None and not positive_seconds(cls.timeout):
        problems.append(
            f"{where}: timeout must be a positive number of seconds (at most a century) or None, got {cls.timeout!r}"
        )
    if not cls.steps:
        problems.append(f"{where} declares no steps; set abstract = True on a base class")
    problems += [f"{where}: {problem}" for problem in schemas.problems(cls.payload_schema)]
    if isinstance(cls.searchable, str) or not all(isinstance(key, str) for key in cls.searchable):
        problems.append(f"{where}: searchable must be a list of payload keys, got {cls.searchable!r}")
    else:
        secret = [key for key in cls.searchable if is_masked_key(key)]
        if secret:
            problems.append(
                f"{where}: searchable keys {secret!r} are masked (SAGAS['MASKED_KEYS']): their values would be "
                "stored in the run's search text in clear; search by another key"
            )
    names = [step.name for step in cls.steps if isinstance(step, Step)]
    seen: set[str] = set()
    cycles: set[frozenset[str]] = set()
    for step in cls.steps:
        if not isinstance(step, Step):
            problems.append(f"{where}: steps must be sagas.Step objects, got {step!r}")
            continue
        at = f"{where}, step {step.name!r}"
        problems += [f"{at}: {problem}" for problem in step.problems()]
        if step.name in seen:
            problems.append(f"{where}: two steps are named {step.name!r}; step names must be unique, pass name='...'")
        if len(set(step.depends_on)) != len(step.depends_on):
            problems.append(f"{at}: depends_on names a step twice: {list(step.depends_on)!r}")
        for dependency in step.depends_on:
            if not isinstance(dependency, str):
                problems.append(f"{at}: depends_on must name steps, got {dependency!r}")
            elif dependency == step.name:
                problems.append(f"{at}: depends on itself")
            elif dependency in names and (cycle := _cycle_through(cls.steps, step.name)):
                if frozenset(cycle) not in cycles:  # say each cycle once, from its first step
                    cycles.add(frozenset(cycle))
                    problems.append(f"{at}: its dependencies form a cycle: {' -> '.join(cycle)}")
            elif dependency not in seen:
                where_it_is = (
                    "declared after it; declare dependencies first"
                    if dependency in names
                    else ("not a step of this saga")
                )
                problems.append(f"{at}: depends on {dependency!r}, which is {where_it_is}")
        seen.add(step.name)
    if not problems:
        problems += _pivot_problems(cls, where)
    if problems:
        raise InvalidDefinition("\n".join(problems) + ".")


def _pivot_problems(cls: type[Saga], where: str) -> list[str]:
    """An irreversible step is a pivot: every compensable step must have succeeded before it starts (be one of
    its ancestors), or a failure after the pivot would undo some steps while the pivot's effect stays."""
    ancestors = cls.ancestors()
    compensable = [step.name for step in cls.steps if step.compensation is not None]
    problems = []
    for step in cls.steps:
        if step.irreversible is True and (late := [name for name in compensable if name not in ancestors[step.name]]):
            problems.append(
                f"{where}, step {step.name!r}: irreversible=True makes it a pivot, so every compensable step must "
                f"come before it (be among the steps it depends on), but {', '.join(map(repr, late))} "
                f"{'does' if len(late) == 1 else 'do'} not"
            )
    return problems
