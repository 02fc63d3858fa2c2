"""The API's endpoints: thin views that validate input, call the public saga API, and answer with the run."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar, TypeVar, overload
from urllib.parse import urlencode

from django.db.models import F, Prefetch, QuerySet
from django.urls import reverse
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_view,
)
from rest_framework import status
from rest_framework.exceptions import (
    AuthenticationFailed,
    NotAuthenticated,
    NotFound,
    PermissionDenied,
    ValidationError,
)
from rest_framework.generics import GenericAPIView
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response

import sagas
from sagas import numbers, services
from sagas.api.errors import api_exception
from sagas.api.parsers import JSONBodyParser
from sagas.api.permissions import HasModelPermission
from sagas.api.serializers import (
    ErrorSerializer,
    EventPageSerializer,
    EventSerializer,
    ReasonSerializer,
    ResolveSerializer,
    RunDetailSerializer,
    RunFilterSerializer,
    RunSerializer,
    RunStatusSerializer,
    SignalSerializer,
    StartRunSerializer,
)
from sagas.models import SagaEvent, SagaRun, SagaStepRun
from sagas.registry import all_sagas

TAGS = ["saga runs"]
# What reading runs requires: the endpoints that read them, and the whole run in an action's answer.
VIEW_RUNS = "sagas.view_sagarun"


class RegisteredSagaNames(Sequence[str]):
    """The registered saga names, read each time the schema is generated: sagas may register after import."""

    def _names(self) -> list[str]:
        return sorted({saga.name for saga in all_sagas()})

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> list[str]: ...
    def __getitem__(self, index: int | slice) -> str | list[str]:
        return self._names()[index]

    def __len__(self) -> int:
        return len(self._names())

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())


RUN_ID = OpenApiParameter("run_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The run's id.")
SAGA_NAME = OpenApiParameter(
    "name", str, OpenApiParameter.PATH, enum=RegisteredSagaNames(), description="A registered saga's name."
)


def errors(*codes: int) -> dict[int, OpenApiResponse]:
    """The documented error answers: 400 carries field errors, the others a ``detail`` message."""
    described = {
        400: OpenApiResponse(
            OpenApiTypes.OBJECT,
            "Invalid input: each field name maps to a list of messages (or `detail` for a body that is not JSON).",
            examples=[OpenApiExample("field errors", value={"reason": ["This field may not be blank."]})],
        ),
        401: OpenApiResponse(ErrorSerializer, "No credentials, or an invalid token."),
        403: OpenApiResponse(ErrorSerializer, "Authenticated, but without the permission this endpoint requires."),
        404: OpenApiResponse(ErrorSerializer, "No such run (or saga, or page)."),
        409: OpenApiResponse(ErrorSerializer, "The run's present state (or the deployed code) does not allow it."),
        413: OpenApiResponse(ErrorSerializer, "The request body is over the site's upload limit."),
    }
    return {code: described[code] for code in codes}


def parse_run_id(run_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(run_id)
    except ValueError:
        raise NotFound(f"No saga run with id {run_id!r}: a run id is a UUID.") from None


# A run's answer carries this many of its latest events; the rest are read page by page (RunEventsView).
LATEST_EVENTS = 100
EVENTS_PAGE = 100
EVENTS_PAGE_MAX = 1000


def events_with_causes(run_id: uuid.UUID) -> QuerySet[SagaEvent]:
    """A run's events, each with its cause's seq."""
    return SagaEvent.objects.filter(run_id=run_id).annotate(causation_seq=F("causation__seq"))


def run_with_history(run_id: uuid.UUID) -> SagaRun:
    """The run with its steps and its latest events in three queries, or 404: one answer stays small whatever
    the length of the log."""
    run = (
        SagaRun.objects.filter(pk=run_id)
        .prefetch_related(Prefetch("steps", queryset=SagaStepRun.objects.order_by("index")))
        .first()
    )
    if run is None:
        raise NotFound(f"No saga run with id {str(run_id)!r}.")
    run.latest_events = list(reversed(events_with_causes(run.pk).order_by("-seq")[:LATEST_EVENTS]))  # type: ignore[attr-defined]
    return run


def whole_number(request: Request, name: str, *, default: int, low: int, high: int, of: str = "") -> int:
    """Query parameter ``name`` as a whole number from ``low`` to ``high`` (``default`` when absent or empty), else a
    400 naming it: DRF's own parsing quietly falls back to a default, and a client would never learn its request was
    wrong."""
    raw = request.query_params.get(name, "")
    if raw == "":
        return default
    try:
        return numbers.whole_number(raw, low=low, high=high, of=of)
    except ValueError as exc:
        raise ValidationError({name: [str(exc)]}) from None


def validated(serializer_class: type[Any], data: Any, **context: Any) -> dict[str, Any]:
    serializer = serializer_class(data=data, context=context)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


class SagaAPIView(GenericAPIView[SagaRun]):
    """A JSON endpoint that requires ``required_permission``, throttles refused requests too, and answers framework
    errors with a 4xx."""

    required_permission: ClassVar[str]
    permission_classes = [HasModelPermission]
    parser_classes = [JSONBodyParser]
    queryset = SagaRun.objects.all()

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        try:
            super().initial(request, *args, **kwargs)
        except (AuthenticationFailed, NotAuthenticated, PermissionDenied):
            # DRF throttles after it authenticates and checks permissions (APIView.initial), so it never counts a
            # refused request: a client without credentials, which every endpoint here refuses, was told 401 for
            # ever and never the 429 docs/api.md promises past API_THROTTLE_ANON. Count the refusal, then refuse:
            # past the rate (the address's when anonymous, else the user's) the answer is 429.
            self.check_throttles(request)
            raise

    def handle_exception(self, exc: Exception) -> Response:
        return super().handle_exception(api_exception(exc))


class StartRunView(SagaAPIView):
    required_permission = "sagas.add_sagarun"
    serializer_class = StartRunSerializer

    @extend_schema(
        operation_id="start_run",
        tags=TAGS,
        summary="Start a saga",
        description=(
            "Stores a pending run of the saga registered under `name` and dispatches its steps. With an "
            "`idempotency_key` that already started a run with the same payload, answers that run with 200 "
            "and starts nothing. The run's URL is in the `Location` header. Requires `sagas.add_sagarun`."
        ),
        parameters=[SAGA_NAME],
        request=StartRunSerializer,
        responses={
            201: OpenApiResponse(RunDetailSerializer, "A new run was started."),
            200: OpenApiResponse(RunDetailSerializer, "The idempotency key had already started this run."),
            **errors(400, 401, 403, 404, 409, 413),
        },
    )
    def post(self, request: Request, name: str) -> Response:
        try:
            saga = sagas.get_saga(name)
        except sagas.UnknownSaga as exc:
            raise NotFound(str(exc)) from None
        data = validated(StartRunSerializer, request.data, saga_name=saga.name, saga_timeout=saga.timeout)
        # The service says whether this request stored the run: of two first requests racing with one key,
        # one is told 201 and the other 200, for the same run.
        run, created = services.run_start_or_existing(
            saga=saga,
            payload=data["payload"],
            idempotency_key=data.get("idempotency_key"),
            correlation_id=data.get("correlation_id"),
            start_at=data.get("start_at"),
        )
        location = request.build_absolute_uri(reverse("sagas-api:run-detail", args=[run.pk]))
        return Response(
            RunDetailSerializer(run_with_history(run.pk)).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
            headers={"Location": location},
        )


class RunPagination(PageNumberPagination):
    """Pages of 50 runs, ``?page_size=`` up to 500. A page size that is not one is a 400: DRF's own pagination
    quietly falls back to the default, and a client would never learn its request was wrong."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500

    def get_page_size(self, request: Request) -> int:
        return whole_number(
            request, self.page_size_query_param, default=self.page_size, low=1, high=self.max_page_size, of="runs"
        )

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"].update(minimum=1, maximum=self.max_page_size)
            if parameter["name"] == self.page_query_param:
                parameter["schema"].update(minimum=1)
        return parameters


class EmptyQueryValuesSchema(AutoSchema):
    """Marks every query parameter ``allowEmptyValue``: DRF reads ``?status=`` of an optional field, and an
    empty page or page size (or ``after`` and ``limit``: whole_number), as not given."""

    def get_operation(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        operation: dict[str, Any] | None = super().get_operation(*args, **kwargs)
        for parameter in (operation or {}).get("parameters", []):
            if parameter["in"] == "query":
                parameter["allowEmptyValue"] = True
        return operation


class RunListView(SagaAPIView):
    required_permission = VIEW_RUNS
    serializer_class = RunSerializer
    pagination_class = RunPagination
    schema = EmptyQueryValuesSchema()

    def get_queryset(self) -> QuerySet[SagaRun]:
        filters = validated(RunFilterSerializer, self.request.query_params)
        runs = SagaRun.objects.order_by("-created_at", "-pk")
        lookups = {
            "status": "status",
            "saga": "saga_name",
            "idempotency_key": "idempotency_key",
            "correlation_id": "correlation_id",
            "created_after": "created_at__gte",
            "created_before": "created_at__lt",
        }
        return runs.filter(**{lookups[name]: value for name, value in filters.items()})

    @extend_schema(
        operation_id="list_runs",
        tags=TAGS,
        summary="List runs",
        description="Runs newest first, one page at a time, without their steps and events. Requires "
        "`sagas.view_sagarun`.",
        parameters=[RunFilterSerializer],
        responses={200: RunSerializer(many=True), **errors(400, 401, 403, 404)},
    )
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(RunSerializer(page, many=True).data)


class RunDetailView(SagaAPIView):
    required_permission = VIEW_RUNS
    serializer_class = RunDetailSerializer

    @extend_schema(
        operation_id="get_run",
        tags=TAGS,
        summary="Read a run",
        description="The run with its steps and its event log; secrets in payloads, outputs and event data "
        "are masked. Requires `sagas.view_sagarun`.",
        parameters=[RUN_ID],
        responses={200: RunDetailSerializer, **errors(401, 403, 404)},
    )
    def get(self, request: Request, run_id: str) -> Response:
        return Response(RunDetailSerializer(run_with_history(parse_run_id(run_id))).data)


class RunEventsView(SagaAPIView):
    required_permission = VIEW_RUNS
    serializer_class = EventPageSerializer
    schema = EmptyQueryValuesSchema()

    @extend_schema(
        operation_id="list_run_events",
        tags=TAGS,
        summary="Read a run's event log",
        description="The run's events in seq order, a page at a time: `after` the seq of the last event you have "
        f"(0 for the first page), at most `limit` ({EVENTS_PAGE} by default, up to {EVENTS_PAGE_MAX}); `next` is "
        "the following page's URL until the log ends. Event data is masked. Requires `sagas.view_sagarun`.",
        parameters=[
            RUN_ID,
            OpenApiParameter("after", int, description="Only events with a greater seq (default 0)."),
            OpenApiParameter("limit", int, description=f"Events per page, 1 to {EVENTS_PAGE_MAX}."),
        ],
        responses={200: EventPageSerializer, **errors(400, 401, 403, 404)},
    )
    def get(self, request: Request, run_id: str) -> Response:
        key = parse_run_id(run_id)
        if not SagaRun.objects.filter(pk=key).exists():
            raise NotFound(f"No saga run with id {run_id!r}.")
        after = whole_number(request, "after", default=0, low=0, high=2**31 - 1)
        limit = whole_number(request, "limit", default=EVENTS_PAGE, low=1, high=EVENTS_PAGE_MAX)
        events = list(events_with_causes(key).filter(seq__gt=after).order_by("seq")[: limit + 1])
        following = None
        if len(events) > limit:
            events = events[:limit]
            query = urlencode({"after": events[-1].seq, "limit": limit})
            following = request.build_absolute_uri(f"{reverse('sagas-api:run-events', args=[key])}?{query}")
        return Response({"results": EventSerializer(events, many=True).data, "next": following})


def run_status(run_id: uuid.UUID) -> SagaRun:
    """The run with only its id and status, or 404."""
    run = SagaRun.objects.only("id", "status").filter(pk=run_id).first()
    if run is None:
        raise NotFound(f"No saga run with id {str(run_id)!r}.")
    return run


class RunActionView(SagaAPIView):
    """An operator action on one run, recorded in its event log with the user's username and the reason.

    The answer is the run after the action, all of it to a user who may read runs, else its id and status only:
    the permission to act on a run is not one to read its payload, steps and events (GET answers such a user 403).
    """

    verb: ClassVar[str]

    def act(self, run_id: str, data: dict[str, Any], actor: str) -> None:
        raise NotImplementedError

    def post(self, request: Request, run_id: str) -> Response:
        pk = parse_run_id(run_id)
        if not SagaRun.objects.filter(pk=pk).exists():  # an unknown run is a 404 whatever the body says
            raise NotFound(f"No saga run with id {run_id!r}.")
        data = validated(self.get_serializer_class(), request.data)
        self.act(str(pk), data, request.user.get_username())
        if request.user.has_perm(VIEW_RUNS):
            return Response(RunDetailSerializer(run_with_history(pk)).data)
        return Response(RunStatusSerializer(run_status(pk)).data)


ActionView = TypeVar("ActionView", bound=type[RunActionView])

RUN_AFTER_ACTION = OpenApiResponse(
    PolymorphicProxySerializer(
        component_name="RunAfterAction",
        serializers=[RunDetailSerializer, RunStatusSerializer],
        resource_type_field_name=None,
    ),
    f"The run after the action: all of it (as `GET /api/runs/{{run_id}}/` answers it) to a user who holds "
    f"`{VIEW_RUNS}`, else only its `id` and `status`.",
)


def documented(description: str) -> Callable[[ActionView], ActionView]:
    """The schema of an action view's POST, from its verb and permission (the request: its serializer_class)."""

    def decorate(view: ActionView) -> ActionView:
        schema = extend_schema(
            operation_id=f"{view.verb}_run",
            tags=TAGS,
            summary=f"{view.verb.capitalize()} a run",
            description=f"{description} Answers the run after the action: all of it to a user who also holds "
            f"`{VIEW_RUNS}`, else its `id` and `status` only. Requires `{view.required_permission}`.",
            parameters=[RUN_ID],
            responses={200: RUN_AFTER_ACTION, **errors(400, 401, 403, 404, 409, 413)},
        )
        decorated: ActionView = extend_schema_view(post=schema)(view)
        return decorated

    return decorate


@documented(
    "Re-runs the failed compensations of a `failed` run, or re-drives a run that is stuck or parked; 409 for a "
    "run that is finished or still making progress."
)
class RetryRunView(RunActionView):
    verb = "retry"
    required_permission = "sagas.retry_sagarun"
    serializer_class = ReasonSerializer

    def act(self, run_id: str, data: dict[str, Any], actor: str) -> None:
        sagas.retry(run_id, reason=data["reason"], actor=actor)


@documented(
    "A `pending` run ends `cancelled`; an `executing` run stops and compensates what completed. 409 in any "
    "other status."
)
class CancelRunView(RunActionView):
    verb = "cancel"
    required_permission = "sagas.cancel_sagarun"
    serializer_class = ReasonSerializer

    def act(self, run_id: str, data: dict[str, Any], actor: str) -> None:
        sagas.cancel(run_id, reason=data["reason"], actor=actor)


@documented(
    "Records that a person did by hand what a step of a `failed` run gave up on: a failed compensation (the run "
    "ends `compensated` once none is left), or a step that failed after the pivot, done with the `output` given "
    "(the run goes on forward). 409 unless the run is `failed` and the step is one of those."
)
class ResolveRunView(RunActionView):
    verb = "resolve"
    required_permission = "sagas.resolve_sagarun"
    serializer_class = ResolveSerializer

    def act(self, run_id: str, data: dict[str, Any], actor: str) -> None:
        sagas.resolve(run_id, step=data["step"], reason=data["reason"], actor=actor, output=data.get("output"))


@documented(
    "Delivers the signal `name` to a run whose Wait step of that name is `waiting`: `data` becomes the step's "
    "output and the run goes on. The same signal again is a no-op; 409 when the run is not waiting for it."
)
class SignalRunView(RunActionView):
    verb = "signal"
    required_permission = "sagas.signal_sagarun"
    serializer_class = SignalSerializer

    def act(self, run_id: str, data: dict[str, Any], actor: str) -> None:
        sagas.signal(run_id, data["name"], data["data"], actor=actor, reason=data["reason"])
