"""The in-process registry of saga classes, keyed by name and version."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from sagas.exceptions import InvalidDefinition, UnknownSaga

if TYPE_CHECKING:
    from sagas.definitions import Saga

_sagas: dict[tuple[str, int], type[Saga]] = {}
_listeners: list[Callable[[type[Saga]], None]] = []


def _origin(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def register(cls: type[Saga]) -> None:
    """Record a saga class; called by ``Saga.__init_subclass__``."""
    key = (cls.name, cls.version)
    existing = _sagas.get(key)
    # The same class imported again (a reloaded module) replaces itself; another class may not.
    if existing is not None and _origin(existing) != _origin(cls):
        raise InvalidDefinition(
            f"Saga {cls.name!r} version {cls.version} is declared twice: by {_origin(existing)} and by "
            f"{_origin(cls)}. Give one of them another name or version."
        )
    _sagas[key] = cls
    for listener in _listeners:
        listener(cls)


def unregister(cls: type[Saga]) -> None:
    """Forget a saga class (for tests that declare throw-away sagas)."""
    _sagas.pop((cls.name, cls.version), None)


def on_register(listener: Callable[[type[Saga]], None]) -> None:
    """Call ``listener`` for every saga registered so far and every one registered later."""
    _listeners.append(listener)
    for cls in list(_sagas.values()):
        listener(cls)


def get_saga(name: str, version: int | None = None) -> type[Saga]:
    """The saga class registered under ``name`` (its highest version unless ``version`` is given)."""
    if version is not None and (name, version) in _sagas:
        return _sagas[(name, version)]
    versions = sorted(v for (n, v) in _sagas if n == name)
    if version is None and versions:
        return _sagas[(name, versions[-1])]
    if versions:
        raise UnknownSaga(
            f"Saga {name!r} has no version {version} in this process (registered: "
            f"{', '.join(map(str, versions))}). Keep the old class, with its version, while runs of it remain."
        )
    known = ", ".join(sorted({n for (n, _) in _sagas})) or "none"
    raise UnknownSaga(
        f"No saga named {name!r} is registered (known: {known}). Check that the app declaring it is in "
        "INSTALLED_APPS and that the class lives in the app's sagas.py module."
    )


def all_sagas() -> list[type[Saga]]:
    """Every registered saga class, ordered by name and version."""
    return [_sagas[key] for key in sorted(_sagas)]
