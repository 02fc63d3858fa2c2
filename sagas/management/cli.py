"""Shared by the saga_* management commands: exit codes, run ids into clear errors, tables and JSON."""

from __future__ import annotations

import contextlib
import getpass
import json
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone

from sagas import numbers
from sagas.exceptions import InvalidPayload, InvalidTransition, ReasonRequired, RunNotFound, UnknownStep
from sagas.jsonsafe import read_json, storage_problem
from sagas.masking import masked
from sagas.models import SagaRun
from sagas.selectors import humanize_seconds

EXIT_OK = 0
EXIT_FOUND = 1  # saga_health raised alerts, saga_diagnose found something: a monitoring script should act
EXIT_BAD_INPUT = 2  # malformed or unknown run id, unknown step, missing reason, unusable text or number (as argparse)
EXIT_NOT_ALLOWED = 3  # the action is not allowed in the run's state (sagas.InvalidTransition)


def parse_run_id(value: str) -> uuid.UUID:
    """The run id as a UUID, or exit 2 saying the value is not one."""
    try:
        return uuid.UUID(str(value).strip())
    except ValueError:
        raise CommandError(
            f"{value!r} is not a saga run id: expected a UUID such as 3f2b6c1e-8d4a-4c57-9b0e-2a6f1d7c9e10 "
            "(see `manage.py saga_list`).",
            returncode=EXIT_BAD_INPUT,
        ) from None


def get_run(value: str) -> SagaRun:
    """The run with id ``value``, or exit 2 naming the id."""
    run = SagaRun.objects.filter(pk=parse_run_id(value)).first()
    if run is None:
        raise CommandError(f"No saga run with id {value!r} (see `manage.py saga_list`).", returncode=EXIT_BAD_INPUT)
    return run


@contextmanager
def operator_errors(run_id: str) -> Iterator[None]:
    """Turn the operator API's refusals into exit codes: unknown run or step and a blank reason 2, not allowed in
    the run's state 3."""
    try:
        yield
    except ReasonRequired as exc:
        raise CommandError(
            f"A reason is required for saga run {run_id}: say why with --reason, for the audit trail.",
            returncode=EXIT_BAD_INPUT,
        ) from exc
    except (RunNotFound, UnknownStep, InvalidPayload) as exc:
        raise CommandError(str(exc), returncode=EXIT_BAD_INPUT) from exc
    except InvalidTransition as exc:
        raise CommandError(str(exc), returncode=EXIT_NOT_ALLOWED) from exc


def add_operator_arguments(parser: CommandParser) -> None:
    """run_id, --reason (required), --actor and --json: what saga_retry, saga_resolve and saga_cancel take."""
    parser.add_argument("run_id", help="the saga run's id (a UUID)")
    parser.add_argument("--reason", required=True, metavar="TEXT", help="why, for the run's audit trail (required)")
    parser.add_argument(
        "--actor", default=None, metavar="NAME", help="who is acting (default: cli:<your OS user name>)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def json_option(options: dict[str, Any], name: str) -> Any:
    """The value of a ``--<name> JSON`` option, parsed (None when not given), or exit 2 saying it is not JSON."""
    text = options[name]
    if text is None:
        return None
    try:
        return read_json(text, what=f"--{name} value")
    except InvalidPayload as exc:
        raise CommandError(str(exc), returncode=EXIT_BAD_INPUT) from None


def text_option(value: str, *, option: str) -> str:
    """``value``, given as ``option``, or exit 2 when the database could not take it, stored or looked up: text
    with NUL, or with an unpaired surrogate (what Python makes of bytes in argv that are not UTF-8)."""
    problem = storage_problem(value, what=f"{option} argument")
    if problem:
        raise CommandError(problem, returncode=EXIT_BAD_INPUT)
    return value


def whole_number(value: str | int, *, option: str, high: int, low: int = 1) -> int:
    """``value`` of ``option`` (text from the command line, an int from call_command) as a whole number from ``low``
    to ``high``, or exit 2 naming the range. The digits are counted before int() reads them: it refuses more than
    4,300 with a ValueError of its own, and a number past PostgreSQL's bigint fails in the query."""
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value if low <= value <= high else None
    else:
        with contextlib.suppress(ValueError):
            number = numbers.whole_number(str(value).strip(), low=low, high=high)
    if number is None:
        raise CommandError(
            f"{option} must be a whole number from {low} to {high}, not {_quoted(value)}.", returncode=EXIT_BAD_INPUT
        )
    return number


def _quoted(value: object) -> str:
    """``value`` for an error message: its repr (escapes, not raw control characters), cut short."""
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


def operator_options(options: dict[str, Any]) -> tuple[str, str]:
    """The (reason, actor) of an operator command (the service refuses a blank reason: see operator_errors), or
    exit 2 when either is text the database cannot store."""
    reason = text_option(options["reason"] or "", option="--reason")
    return reason, text_option(options["actor"] or default_actor(), option="--actor")


def default_actor() -> str:
    """``cli:<OS user name>``, so the audit trail says who acted from the shell."""
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):  # no login name in the environment nor the password database
        return "cli:unknown"


def operator_result(run: SagaRun, *, actor: str, as_json: bool) -> str:
    """What saga_retry, saga_resolve and saga_cancel print: the run's new status."""
    run.refresh_from_db(fields=["status", "lock_version"])
    if as_json:
        return dumps({"run": str(run.pk), "status": run.status, "actor": actor})
    return f"Saga run {run.pk} is now {run.status} (by {actor})."


def dumps(data: Any) -> str:
    """JSON for scripts: datetimes in ISO 8601, UUIDs as strings."""
    return json.dumps(data, indent=2, cls=DjangoJSONEncoder, ensure_ascii=False)


def run_json(run: SagaRun) -> dict[str, Any]:
    """A run's columns for --json, with secrets masked."""
    return {
        "id": str(run.pk),
        "saga": run.saga_name,
        "version": run.version,
        "status": run.status,
        "idempotency_key": run.idempotency_key,
        "correlation_id": run.correlation_id,
        "payload": masked(run.payload),
        "error": masked(run.error),
        "parked_reason": run.parked_reason,
        "deadline": run.deadline,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "updated_at": run.updated_at,
        "lock_version": run.lock_version,
    }


def error_text(error: Any) -> str:
    """``Type (class): message`` of a stored error (sagas.failures.Failure.to_json), or ``-``."""
    if not error:
        return "-"
    if not isinstance(error, dict):
        return str(error)
    kind = str(error.get("type") or "").rpartition(".")[2] or str(error.get("code") or "") or "error"
    classified = error.get("class")
    head = f"{kind} ({classified})" if classified and classified != kind else kind
    return f"{head}: {error.get('message', '')}".rstrip(": ")


def ago(moment: datetime | None, now: datetime | None = None) -> str:
    """How long ago, at a glance (``4m 05s``), or ``-``."""
    if moment is None:
        return "-"
    return humanize_seconds(max(0.0, ((now or timezone.now()) - moment).total_seconds()))


def when(moment: datetime | None) -> str:
    """A timestamp in UTC to the millisecond, or ``-``."""
    if moment is None:
        return "-"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def shorten(text: str, width: int = 100) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, two spaces apart (as saga_breakers prints)."""
    lines = [[str(cell) for cell in header], *([str(cell) for cell in row] for row in rows)]
    widths = [max(len(cell) for cell in column) for column in zip(*lines, strict=True)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip() for line in lines
    )
