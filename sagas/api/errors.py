"""How the framework's refusals read over HTTP: every SagaError a view can meet becomes a 4xx with its message."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from rest_framework import status
from rest_framework.exceptions import APIException, NotFound, ValidationError
from rest_framework.settings import api_settings

from sagas.exceptions import InvalidPayload, ReasonRequired, RunNotFound, SagaError, UnknownStep


class Conflict(APIException):
    """409: the request is well formed, but the run's state (or the deployed code) does not allow it now."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = "The saga run's present state does not allow this request."
    default_code = "conflict"


class RequestTooLarge(APIException):
    """413: the request body is over the site's upload limit."""

    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "request_too_large"


def api_exception(exc: Exception) -> Exception:
    """The APIException that answers a framework error (or a body over the upload limit); any other exception
    is returned unchanged.

    RunNotFound is 404; InvalidPayload, UnknownStep and ReasonRequired are 400 on their field. The rest are 409:
    InvalidTransition (the run's state forbids the action), IdempotencyConflict (the key started another
    request), DefinitionChanged and UnknownSaga (the code deployed here cannot run this saga version).
    """
    if isinstance(exc, RequestDataTooBig):  # Django answers it with a bare HTML 400
        return RequestTooLarge(
            f"The request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes "
            "(DATA_UPLOAD_MAX_MEMORY_SIZE): keep large data in your own tables and pass its id in the payload."
        )
    if not isinstance(exc, SagaError):
        return exc
    if isinstance(exc, RunNotFound):
        return NotFound(str(exc), code="run_not_found")
    if isinstance(exc, InvalidPayload):  # on the request field that held the value: payload, data, output, reason
        if exc.errors:  # a schema (or the outside-data check) said what is wrong, key by key
            fields = {field or api_settings.NON_FIELD_ERRORS_KEY: messages for field, messages in exc.errors.items()}
            return ValidationError({exc.field: fields}, code="invalid_payload")
        return ValidationError({exc.field: [str(exc)]}, code="invalid_payload")
    if isinstance(exc, UnknownStep):  # bad input, not a state conflict: a run's steps never change
        return ValidationError({"step": [str(exc)]}, code="unknown_step")
    if isinstance(exc, ReasonRequired):
        return ValidationError({"reason": [str(exc)]}, code="reason_required")
    return Conflict(str(exc), code=type(exc).__name__)
