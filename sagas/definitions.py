"""Declaring sagas in plain Python: Saga, Step and StepContext (no ORM here)."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import KW_ONLY, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from sagas import registry
from sagas.exceptions import InvalidDefinition
from sagas.retry import RetryPolicy

if TYPE_CHECKING:
    from sagas.models import SagaRun

STEP_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SAGA_NAME = re.compile(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$")


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


@dataclass(frozen=True, slots=True)
class Step:
    """One local transaction of a saga and the compensation that undoes it."""

    action: StepFunction
    compensation: StepFunction | None = None
    _: KW_ONLY
    name: str = ""
    service: str | None = None  # the remote service it calls (for logs, breakers, the admin)
    timeout: float | None = None  # seconds; becomes the task's soft time limit
    retry: RetryPolicy | None = None  # None: SAGAS["DEFAULT_RETRY"]
    compensation_retry: RetryPolicy | None = None  # None: SAGAS["DEFAULT_COMPENSATION_RETRY"]
    depends_on: tuple[str, ...] = field(default=())
    priority: int = 0  # higher compensates first among completed steps

    def __post_init__(self) -> None:
        if not callable(self.action):
            raise InvalidDefinition(f"Step action must be callable, got {self.action!r}.")
        if self.compensation is not None and not callable(self.compensation):
            raise InvalidDefinition(f"Step compensation must be callable or None, got {self.compensation!r}.")
        name = self.name or getattr(self.action, "__name__", "")
        if not STEP_NAME.match(name):
            raise InvalidDefinition(
                f"Step name {name!r} is not a valid identifier; pass name='...' (letters, digits, underscore)."
            )
        object.__setattr__(self, "name", name)
        depends_on = (self.depends_on,) if isinstance(self.depends_on, str) else tuple(self.depends_on)
        object.__setattr__(self, "depends_on", depends_on)
        if self.timeout is not None and not (isinstance(self.timeout, int | float) and self.timeout > 0):
            raise InvalidDefinition(f"Step {name!r}: timeout must be a positive number of seconds.")
        for attr in ("retry", "compensation_retry"):
            policy = getattr(self, attr)
            if policy is not None and not isinstance(policy, RetryPolicy):
                raise InvalidDefinition(f"Step {name!r}: {attr} must be a sagas.RetryPolicy, got {policy!r}.")
        if not isinstance(self.priority, int):
            raise InvalidDefinition(f"Step {name!r}: priority must be an int.")

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
        }


class Saga:
    """Base class of every saga: subclasses declare ``steps`` and register themselves by ``name``.

    A subclass that only shares code with others sets ``abstract = True`` and is not registered.
    """

    name: ClassVar[str] = ""
    version: ClassVar[int] = 1
    timeout: ClassVar[float | None] = None  # saga deadline in seconds from start
    steps: ClassVar[Iterable[Step]] = ()
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
    ) -> SagaRun:
        """Store a new run and dispatch its steps once the surrounding transaction commits.

        Starting again with the same ``idempotency_key`` returns the existing run and dispatches nothing.
        """
        from sagas import services  # services needs the ORM, which this module must not load

        return services.run_start(
            saga=cls, payload=payload, idempotency_key=idempotency_key, correlation_id=correlation_id
        )


def _qualified_name(func: Callable[..., Any]) -> str:
    module = getattr(func, "__module__", None) or "?"
    qualname = getattr(func, "__qualname__", None) or repr(func)
    return f"{module}.{qualname}"


def _default_saga_name(cls: type[Saga]) -> str:
    from django.apps import apps
    from django.core.exceptions import AppRegistryNotReady

    try:
        app_config = apps.get_containing_app_config(cls.__module__)
    except AppRegistryNotReady:
        app_config = None
    if app_config is None:  # defined before apps are loaded: the package that holds the module
        parts = cls.__module__.split(".")
        return f"{parts[-2] if len(parts) > 1 else parts[0]}.{cls.__name__}"
    return f"{app_config.label}.{cls.__name__}"


def _validate(cls: type[Saga]) -> None:
    where = f"Saga {cls.__qualname__} ({cls.name!r})"
    if not SAGA_NAME.match(cls.name):
        raise InvalidDefinition(f"{where}: name must be dotted words of letters, digits and underscores.")
    if not isinstance(cls.version, int) or isinstance(cls.version, bool) or cls.version < 1:
        raise InvalidDefinition(f"{where}: version must be an int >= 1, got {cls.version!r}.")
    if cls.timeout is not None and not (isinstance(cls.timeout, int | float) and cls.timeout > 0):
        raise InvalidDefinition(f"{where}: timeout must be a positive number of seconds or None.")
    steps = cls.steps
    if not steps:
        raise InvalidDefinition(f"{where} declares no steps; set abstract = True on a base class.")
    seen: set[str] = set()
    for step in steps:
        if not isinstance(step, Step):
            raise InvalidDefinition(f"{where}: steps must be sagas.Step objects, got {step!r}.")
        if step.name in seen:
            raise InvalidDefinition(
                f"{where}: two steps are named {step.name!r}; step names must be unique, pass name='...'."
            )
        for dependency in step.depends_on:
            if dependency == step.name:
                raise InvalidDefinition(f"{where}: step {step.name!r} depends on itself.")
            if dependency not in seen:
                later = any(other.name == dependency for other in steps)
                raise InvalidDefinition(
                    f"{where}: step {step.name!r} depends on {dependency!r}, which is "
                    + ("declared after it; declare dependencies first." if later else "not a step of this saga.")
                )
        seen.add(step.name)
