"""Payload schemas: a saga's ``payload_schema`` (a pydantic model class or a JSON Schema dict), checked at start."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# What a project installs for each kind of schema (pyproject.toml's extras).
PYDANTIC_EXTRA = 'pip install "django-celery-sagas[pydantic]"'
JSONSCHEMA_EXTRA = 'pip install "django-celery-sagas[jsonschema]"'

FieldErrors = dict[str, list[str]]  # a field's dotted path ("lines.0.sku"; "" for the payload itself) -> messages


def is_pydantic_model(schema: Any) -> bool:
    try:
        from pydantic import BaseModel  # optional: only a project that declares a pydantic schema has it
    except ImportError:
        return False
    return isinstance(schema, type) and issubclass(schema, BaseModel)


def problems(schema: Any, *, what: str = "payload_schema") -> list[str]:
    """Why ``schema`` cannot be a schema (empty when it can): checked when the saga class is defined. ``what``:
    how the declaration names it (a saga's ``payload_schema``, a Wait's ``schema``)."""
    if schema is None or is_pydantic_model(schema):
        return []
    if isinstance(schema, type):
        return [
            f"{what} {schema.__qualname__} is a class but not a pydantic model (pydantic.BaseModel); "
            f"for pydantic models: {PYDANTIC_EXTRA}"
        ]
    if not isinstance(schema, Mapping):
        return [f"{what} must be a pydantic model class or a JSON Schema dict, got {schema!r}"]
    try:
        import jsonschema  # optional: only a project that declares a JSON Schema needs it
    except ImportError:
        return [f"{what} is a JSON Schema, which needs the jsonschema library: {JSONSCHEMA_EXTRA}"]
    validator = jsonschema.validators.validator_for(schema)
    try:
        validator.check_schema(dict(schema))
    except jsonschema.SchemaError as exc:
        return [f"{what} is not a valid JSON Schema: {exc.message} (at {_path(exc.path) or 'its root'})"]
    return []


def errors(schema: Any, payload: Mapping[str, Any]) -> FieldErrors:
    """Every way ``payload`` breaks ``schema``, by field (empty when it matches)."""
    if schema is None:
        return {}
    if is_pydantic_model(schema):
        return _pydantic_errors(schema, payload)
    return _jsonschema_errors(schema, payload)


def json_schema(schema: Any) -> dict[str, Any] | None:
    """The JSON Schema of a payload schema (pydantic's for a model), for the API's documentation."""
    if schema is None:
        return None
    if is_pydantic_model(schema):
        generated: dict[str, Any] = schema.model_json_schema()
        return generated
    return dict(schema)


def inlined(shape: dict[str, Any]) -> dict[str, Any]:
    """``shape`` with its local references (``#/$defs/...``, as pydantic writes nested models) replaced by what
    they name, so it stands alone inside another document; a model that contains itself stays a plain object."""
    definitions = shape.get("$defs", {})

    def resolve(node: Any, seen: tuple[str, ...]) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                name = ref.removeprefix("#/$defs/")
                if name in seen or name not in definitions:
                    return {"type": "object"}
                return resolve(definitions[name], (*seen, name))
            return {key: resolve(value, seen) for key, value in node.items() if key != "$defs"}
        if isinstance(node, list):
            return [resolve(item, seen) for item in node]
        return node

    resolved: dict[str, Any] = resolve(shape, ())
    return resolved


def _pydantic_errors(model: Any, payload: Mapping[str, Any]) -> FieldErrors:
    from pydantic import ValidationError

    try:
        model.model_validate(dict(payload))
    except ValidationError as exc:
        found: FieldErrors = {}
        for error in exc.errors(include_url=False):
            found.setdefault(_path(error["loc"]), []).append(str(error["msg"]))
        return found
    return {}


def _jsonschema_errors(schema: Mapping[str, Any], payload: Mapping[str, Any]) -> FieldErrors:
    import jsonschema

    validator = jsonschema.validators.validator_for(schema)(schema)
    found: FieldErrors = {}
    for error in sorted(validator.iter_errors(dict(payload)), key=lambda e: (list(map(str, e.path)), e.message)):
        path = list(error.path)
        if error.validator == "required" and isinstance(error.instance, Mapping):
            # "'amount' is a required property" is about the missing field, not the object that lacks it.
            required = error.validator_value if isinstance(error.validator_value, list) else []
            missing = [name for name in required if name not in error.instance and repr(name) in error.message]
            path += missing[:1]
        found.setdefault(_path(path), []).append(error.message)
    return found


def _path(parts: Any) -> str:
    return ".".join(str(part) for part in parts)


def describe(saga_name: str, found: FieldErrors) -> str:
    """The errors as one message: every field and what is wrong with it."""
    return f"The payload of saga {saga_name!r} does not match its payload_schema: {listed(found, 'payload')}."


def listed(found: FieldErrors, whole: str) -> str:
    """Every field of ``found`` and what is wrong with it, in one line (``whole``: the name of the value itself)."""
    return "; ".join(f"{field or whole}: {' '.join(messages)}" for field, messages in sorted(found.items()))
