"""What the API reads (start, operator actions, list filters) and what it answers (runs, steps, events, errors)."""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from drf_spectacular.extensions import OpenApiSerializerExtension, OpenApiSerializerFieldExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.settings import api_settings

from sagas import schemas
from sagas.definitions import start_time
from sagas.exceptions import InvalidPayload
from sagas.jsonsafe import json_copy
from sagas.masking import masked
from sagas.models import SagaEvent, SagaRun, SagaStepRun
from sagas.registry import all_sagas, get_saga
from sagas.services.runs import check_payload_size
from sagas.states import RunStatus

# --- answers ---


@extend_schema_field(OpenApiTypes.ANY)
class MaskedJSONField(serializers.JSONField):
    """A stored JSON value with the values under secret keys (SAGAS["MASKED_KEYS"]) masked, as the admin shows it."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(read_only=True, **kwargs)

    def to_representation(self, value: Any) -> Any:
        return masked(value)


@extend_schema_field(OpenApiTypes.OBJECT)
class MaskedObjectField(MaskedJSONField):
    """A stored JSON object, masked."""


class StepSerializer(serializers.ModelSerializer[SagaStepRun]):
    output = MaskedJSONField(allow_null=True, help_text="What the action returned, secrets masked.")
    error = MaskedObjectField(allow_null=True, help_text="The last failure of the action or compensation.")

    class Meta:
        model = SagaStepRun
        fields = [
            "name",
            "index",
            "status",
            "attempts",
            "compensation_attempts",
            "output",
            "error",
            "started_at",
            "finished_at",
            "compensated_at",
            "wait_until",
            "worker",
            "worker_pid",
        ]
        read_only_fields = fields


class EventSerializer(serializers.ModelSerializer[SagaEvent]):
    # A field named like the serializer's `data` property: DRF takes declared fields off the class.
    data = MaskedObjectField(help_text="Details: statuses, attempt, error, reason; secrets masked.")  # type: ignore[assignment]
    causation_seq = serializers.IntegerField(
        read_only=True, allow_null=True, help_text="The seq of the event this one follows from, if any."
    )

    class Meta:
        model = SagaEvent
        fields = ["seq", "type", "step", "data", "actor", "created_at", "causation_seq"]
        read_only_fields = fields


class RunSerializer(serializers.ModelSerializer[SagaRun]):
    """A run as a list shows it: without its payload, which may be large (read one run for it)."""

    error = MaskedObjectField(allow_null=True, help_text="The failure that made the saga compensate or stop.")

    class Meta:
        model = SagaRun
        fields = [
            "id",
            "saga_name",
            "version",
            "status",
            "idempotency_key",
            "correlation_id",
            "error",
            "parked_reason",
            "deadline",
            "start_at",
            "created_at",
            "started_at",
            "finished_at",
            "updated_at",
            "parent",
            "parent_step",
        ]
        read_only_fields = fields


class RunDetailSerializer(RunSerializer):
    payload = MaskedObjectField(help_text="The payload the saga was started with, secrets masked.")
    steps = StepSerializer(many=True, read_only=True, help_text="The steps in saga order.")
    events = EventSerializer(
        many=True,
        read_only=True,
        source="latest_events",
        help_text="The run's latest events (at most 100), oldest first; all of them, page by page, at `events_url`.",
    )
    events_total = serializers.IntegerField(
        read_only=True, source="lock_version", help_text="How many events the run's log holds."
    )
    events_url = serializers.SerializerMethodField(help_text="Where the whole event log is read, page by page.")

    class Meta(RunSerializer.Meta):
        fields = [*RunSerializer.Meta.fields, "payload", "steps", "events", "events_total", "events_url"]
        read_only_fields = fields

    def get_events_url(self, run: SagaRun) -> str:
        return reverse("sagas-api:run-events", args=[run.pk])


class RunStatusSerializer(serializers.ModelSerializer[SagaRun]):
    """What an operator action answers a user who may act on runs but not read them: the run's id and status."""

    class Meta:
        model = SagaRun
        fields = ["id", "status"]
        read_only_fields = fields


class RunStatusSchema(OpenApiSerializerExtension):  # type: ignore[no-untyped-call]  # registers itself
    """RunStatusSerializer's schema allows no other property: an action's answer is one of it and
    RunDetailSerializer (``oneOf``), and a whole run, which has an id and a status too, must match only the latter."""

    target_class = RunStatusSerializer

    def map_serializer(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        schema: dict[str, Any] = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        return {**schema, "additionalProperties": False}


class EventPageSerializer(serializers.Serializer[Any]):
    results = EventSerializer(many=True, read_only=True, help_text="Events in seq order.")
    next = serializers.CharField(
        allow_null=True, read_only=True, help_text="The next page's URL (events after the last one here), or null."
    )


class ErrorSerializer(serializers.Serializer[Any]):
    detail = serializers.CharField(help_text="What went wrong, and what to do about it.")


# --- requests ---


class TextField(serializers.CharField):
    """A JSON string: DRF's CharField would also take a number and store its digits, which the schema forbids."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class PayloadField(serializers.DictField):
    """A start payload: a JSON object, whose shape each saga's ``payload_schema`` may set (PayloadFieldSchema)."""


class PayloadFieldSchema(OpenApiSerializerFieldExtension):  # type: ignore[no-untyped-call]  # registers itself
    """The payload's OpenAPI schema: any of the shapes the registered sagas declare, each titled with its saga, or
    any object for a saga without a ``payload_schema``. Read when the schema is generated, once every saga is."""

    target_class = PayloadField

    def map_serializer_field(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        shapes = []
        for saga in all_sagas():
            shape = schemas.json_schema(saga.payload_schema)
            if shape is not None and saga is get_saga(saga.name):  # the version new runs start under
                shapes.append({**openapi_30(schemas.inlined(shape)), "title": f"payload of {saga.name}"})
        generic = {"type": "object", "additionalProperties": {}, "title": "payload of a saga without a payload_schema"}
        return {"anyOf": [*shapes, generic]} if shapes else generic


def openapi_30(node: Any) -> Any:
    """A JSON Schema (pydantic writes draft 2020-12) as OpenAPI 3.0's dialect, which drf-spectacular serves: numeric
    exclusive bounds become a bound and a flag, ``const`` a one-value ``enum``, a ``null`` type ``nullable``."""
    if isinstance(node, list):
        return [openapi_30(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: openapi_30(value) for key, value in node.items() if key != "$schema"}
    for exclusive, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        value = converted.get(exclusive)
        if isinstance(value, int | float) and not isinstance(value, bool):
            converted[bound], converted[exclusive] = value, True
    if "const" in converted:
        converted["enum"] = [converted.pop("const")]
    types = converted.get("type")
    if isinstance(types, list):
        others = [kind for kind in types if kind != "null"]
        del converted["type"]
        if len(others) == 1:
            converted["type"] = others[0]
        elif others:
            converted["anyOf"] = [{"type": kind} for kind in others]
        if "null" in types:
            converted["nullable"] = True
    return converted


class StartRunSerializer(serializers.Serializer[Any]):
    payload = PayloadField(
        help_text="The saga's input, a JSON object (ids, strings, numbers, lists and objects), of the shape its "
        "payload_schema declares (400 with the fields that do not match).",
        error_messages={"not_a_dict": 'The payload must be a JSON object, not a "{input_type}".'},
    )
    idempotency_key = TextField(
        required=False,
        max_length=255,
        trim_whitespace=False,
        help_text="Starting again with this key returns the run it started (200) instead of a new one; "
        "with another payload it is refused (409).",
    )
    correlation_id = TextField(
        required=False,
        max_length=255,
        trim_whitespace=False,
        help_text="Ties the run and its events to the request that started it; defaults to the run's id.",
    )
    countdown = serializers.FloatField(
        required=False,
        min_value=0,
        help_text="A delayed start: the run stays pending, and no step runs, for this many seconds.",
    )
    eta = serializers.DateTimeField(
        required=False,
        help_text="A delayed start: the run stays pending, and no step runs, until then (ISO 8601, with a zone).",
    )

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        countdown, eta = data.pop("countdown", None), data.pop("eta", None)
        try:
            data["start_at"] = start_time(countdown, eta, timeout=self.context.get("saga_timeout"))
        except ValueError as exc:
            # On the field given (countdown when both are); neither: the saga's own timeout overflows its deadline.
            field = "countdown" if countdown is not None else "eta" if eta is not None else None
            raise serializers.ValidationError({field or api_settings.NON_FIELD_ERRORS_KEY: [str(exc)]}) from exc
        return data

    def validate_payload(self, value: dict[str, Any]) -> dict[str, Any]:
        try:
            copied = json_copy(value, what="payload")  # what start() checks too: JSON, not too deep, text jsonb takes
            check_payload_size(str(self.context.get("saga_name", "")), copied)
        except InvalidPayload as exc:
            raise serializers.ValidationError(str(exc)) from exc
        return value


class ReasonSerializer(serializers.Serializer[Any]):
    # Not trimmed before the length check, so the limit is the one the schema states; the reason is
    # recorded stripped (sagas.services.operator).
    reason = TextField(
        max_length=1000,
        trim_whitespace=False,
        help_text="Why, for the audit trail: recorded with your username in the run's event log.",
    )

    def validate_reason(self, value: str) -> str:
        if not value.strip():
            raise serializers.ValidationError("This field may not be blank.")
        return value


class ResolveSerializer(ReasonSerializer):
    step = TextField(
        max_length=100,
        trim_whitespace=False,
        help_text="The name of the step whose compensation you did by hand, or of the step that failed after the "
        "pivot which you did by hand.",
    )
    output = serializers.JSONField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Only for a step that failed after the pivot: what it should have returned (an object's keys are "
        "merged into the payload of the steps after it).",
    )


class SignalSerializer(serializers.Serializer[Any]):
    name = TextField(max_length=100, trim_whitespace=False, help_text="The name of the Wait step the signal is for.")
    # The serializer's metaclass moves declared fields off the class, so Serializer.data is untouched.
    data = serializers.DictField(  # type: ignore[assignment]
        required=False,
        default=dict,
        help_text="A JSON object: it becomes the Wait step's output, merged into the payload of the steps after it.",
    )
    reason = TextField(
        max_length=1000,
        required=False,
        default="",
        allow_blank=True,
        trim_whitespace=False,
        help_text="Optional: recorded with your username in the run's event log.",
    )


class RunFilterSerializer(serializers.Serializer[Any]):
    """The list's filters. DRF reads an empty query value of an optional field as absent, so ``?status=`` (as
    a form sends it) filters nothing; the schema says so with ``allowEmptyValue``."""

    status = serializers.ChoiceField(
        choices=RunStatus.choices,
        required=False,
        help_text="Only runs in this status.",
        error_messages={
            "invalid_choice": '"{input}" is not a run status; use one of: ' + ", ".join(RunStatus.values) + "."
        },
    )
    saga = serializers.CharField(
        required=False, max_length=200, trim_whitespace=False, help_text="Only runs of this saga (its name)."
    )
    idempotency_key = serializers.CharField(
        required=False, max_length=255, trim_whitespace=False, help_text="The run started with this key."
    )
    correlation_id = serializers.CharField(
        required=False, max_length=255, trim_whitespace=False, help_text="Only runs with this correlation id."
    )
    created_after = serializers.DateTimeField(
        required=False, help_text="Only runs created at or after this ISO 8601 time."
    )
    created_before = serializers.DateTimeField(required=False, help_text="Only runs created before this ISO 8601 time.")
