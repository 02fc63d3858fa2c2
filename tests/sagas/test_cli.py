"""The operator commands: saga_list, saga_trace, saga_diagnose, saga_retry, saga_resolve, saga_cancel, saga_health."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

import sagas
from participants.checkout.sagas import PlaceOrder
from sagas.masking import MASK
from sagas.models import SagaEvent, SagaRun
from sagas.states import EventType, RunStatus, StepStatus
from tests.conftest import reset_breakers
from tests.factories import COMPENSATION_FAILED, SagaRunFactory, forward_failed_run, waiting_run

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


def run_command(*args: str, **options: Any) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO(), **options)
    return out.getvalue()


def run_failing(*args: str, **options: Any) -> tuple[CommandError, str]:
    """Run a command that must exit non-zero; its error and what it printed on stdout."""
    out = io.StringIO()
    with pytest.raises(CommandError) as raised:
        call_command(*args, stdout=out, stderr=io.StringIO(), **options)
    return raised.value, out.getvalue()


def manage(*args: str | bytes) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def failed_run(**kwargs: Any) -> SagaRun:
    run = SagaRunFactory(status=RunStatus.FAILED, step_statuses=COMPENSATION_FAILED, **kwargs)
    error = {"type": "sagas.exceptions.TransientError", "class": "transient", "message": "refund gateway down"}
    run.steps.filter(name="charge_payment").update(
        compensation_attempts=3,
        error=error,
        failures=[{"kind": "compensation", **error, "attempt": n, "retry_in": None} for n in (1, 2, 3)],
    )
    return run


def make_stale(run: SagaRun, age: timedelta = timedelta(hours=1)) -> None:
    SagaRun.objects.filter(pk=run.pk).update(updated_at=timezone.now() - age)


# --- saga_list ---


def test_saga_list_shows_runs_newest_first_with_the_step_to_look_at_and_its_attempts() -> None:
    older = SagaRunFactory(status=RunStatus.COMPLETED, created_at=timezone.now() - timedelta(hours=2))
    newer = failed_run()
    lines = run_command("saga_list").splitlines()
    assert lines[0].split() == ["id", "saga", "status", "age", "duration", "step", "attempts"]
    assert [line.split()[0] for line in lines[1:]] == [str(newer.pk), str(older.pk)]
    assert f"{PlaceOrder.name} v{PlaceOrder.version}" in lines[1]
    assert "charge_payment (compensation_failed)" in lines[1]
    assert lines[1].split()[-1] == "3"  # the compensation's attempts
    assert "2h 00m" in lines[2]


def test_saga_list_filters_by_status_saga_awaiting_person_stuck_and_since() -> None:
    done = SagaRunFactory(status=RunStatus.COMPLETED)
    failed = failed_run()
    stuck = SagaRunFactory(status=RunStatus.EXECUTING)
    make_stale(stuck)
    old = SagaRunFactory(status=RunStatus.COMPENSATED, created_at=timezone.now() - timedelta(hours=30))

    def ids(*args: str) -> set[str]:
        return {row["id"] for row in json.loads(run_command("saga_list", "--json", *args))}

    assert ids() == {str(r.pk) for r in (done, failed, stuck, old)}
    assert ids("--status", "completed", "--status", "compensated") == {str(done.pk), str(old.pk)}
    assert ids("--awaiting-person") == {str(failed.pk)}
    assert ids("--stuck") == {str(stuck.pk)}
    assert ids("--since", "24") == {str(done.pk), str(failed.pk), str(stuck.pk)}
    assert ids("--saga", PlaceOrder.name, "--limit", "2") == {str(failed.pk), str(stuck.pk)}
    assert ids("--saga", "NoSuchSaga") == set()


def test_saga_list_json_describes_each_run() -> None:
    run = failed_run()
    SagaRun.objects.filter(pk=run.pk).update(created_at=timezone.now() - timedelta(minutes=1))
    (row,) = json.loads(run_command("saga_list", "--json"))
    assert row["id"] == str(run.pk)
    assert (row["saga"], row["version"], row["status"]) == (PlaceOrder.name, PlaceOrder.version, "failed")
    assert (row["step"], row["step_status"], row["compensation_attempts"]) == (
        "charge_payment",
        "compensation_failed",
        3,
    )
    # Its age is now less its creation, as the row was read: planted a minute ago, it is a minute old.
    assert row["age_seconds"] == pytest.approx(60, abs=5)


def test_saga_list_says_when_nothing_matches() -> None:
    assert run_command("saga_list").strip() == "No saga runs match."


def test_saga_list_reads_runs_and_their_steps_in_two_queries(django_assert_num_queries) -> None:
    for _ in range(5):
        failed_run()
    with django_assert_num_queries(2):
        run_command("saga_list")


# --- saga_trace ---


def test_saga_trace_shows_the_header_then_the_timeline() -> None:
    run = SagaRunFactory(status=RunStatus.PENDING, idempotency_key="order-77", correlation_id="req-abc")
    sagas.cancel(run.pk, reason="customer changed their mind", actor="alice")
    out = run_command("saga_trace", str(run.pk))
    header, timeline = out.split("\n\n", 1)
    assert f"{PlaceOrder.name} v{PlaceOrder.version}" in header
    assert "cancelled" in header
    assert "order-77" in header
    assert "req-abc" in header
    lines = timeline.strip().splitlines()
    assert lines[0].split()[:3] == ["seq", "time", "(UTC)"]
    first = lines[1]
    assert "SagaCancelled" in first
    assert "alice" in first
    assert "pending→cancelled" in first
    assert "reason: customer changed their mind" in first
    assert "StepSkipped" in lines[2]
    assert "+0." in lines[2]  # time since the event before


def test_saga_trace_summarises_errors_and_retries() -> None:
    run = SagaRunFactory(status=RunStatus.EXECUTING)
    SagaEvent.objects.create(
        run=run,
        seq=1,
        type=EventType.STEP_ATTEMPT_FAILED,
        step="charge_payment",
        data={
            "error": {"type": "sagas.exceptions.TransientError", "class": "transient", "message": "gateway timeout"},
            "retry_in": 2.5,
            "attempt": 1,
        },
    )
    out = run_command("saga_trace", str(run.pk))
    assert "error: TransientError (transient): gateway timeout; retry in 2.5s; attempt 1" in out


def test_saga_trace_names_the_worker_process_of_each_attempt() -> None:
    run = SagaRunFactory(status=RunStatus.EXECUTING)
    run.steps.filter(name="create_order").update(worker="w2@box", worker_pid=31337)
    SagaEvent.objects.create(
        run=run,
        seq=1,
        type=EventType.STEP_STARTED,
        step="create_order",
        data={"from": "pending", "to": "running", "attempt": 1, "task_id": "t", "worker": "w2@box", "pid": 31337},
    )
    out = run_command("saga_trace", str(run.pk))
    assert "pending→running; attempt 1; on w2@box pid 31337" in out
    data = json.loads(run_command("saga_trace", str(run.pk), "--json"))
    assert (data["steps"][0]["worker"], data["steps"][0]["worker_pid"]) == ("w2@box", 31337)


def test_saga_trace_json_masks_secrets_in_payload_and_events() -> None:
    run = SagaRunFactory(status=RunStatus.PENDING, payload={"card_number": "4111111111111111", "sku": "A1"})
    SagaEvent.objects.create(run=run, seq=1, type=EventType.SAGA_STARTED, data={"card_number": "4111111111111111"})
    out = run_command("saga_trace", str(run.pk), "--json")
    assert "4111111111111111" not in out
    data = json.loads(out)
    assert data["run"]["payload"] == {"card_number": MASK, "sku": "A1"}
    assert data["run"]["id"] == str(run.pk)
    assert [s["name"] for s in data["steps"]][:2] == ["create_order", "reserve_stock"]
    (event,) = data["events"]
    assert (event["seq"], event["type"], event["data"]) == (1, "SagaStarted", {"card_number": MASK})


# --- bad input: exit 2 ---


@pytest.mark.parametrize(
    ("command", "extra"),
    [
        ("saga_trace", []),
        ("saga_diagnose", ["--no-workers"]),
        ("saga_retry", ["--reason", "x"]),
        ("saga_cancel", ["--reason", "x"]),
        ("saga_resolve", ["--reason", "x", "--step", "charge_payment"]),
    ],
)
def test_a_malformed_or_unknown_run_id_exits_2_naming_the_id(command: str, extra: list[str]) -> None:
    error, _ = run_failing(command, "not-a-uuid", *extra)
    assert error.returncode == 2
    assert "'not-a-uuid' is not a saga run id" in str(error)
    unknown = str(uuid.uuid4())
    error, _ = run_failing(command, unknown, *extra)
    assert error.returncode == 2
    assert f"No saga run with id {unknown!r}" in str(error)


def test_manage_py_exits_2_with_the_message_for_a_malformed_run_id() -> None:
    result = manage("saga_trace", "not-a-uuid")
    assert result.returncode == 2
    assert "'not-a-uuid' is not a saga run id" in result.stderr
    assert result.stdout == ""


def test_manage_py_exits_2_when_the_reason_is_missing() -> None:
    result = manage("saga_retry", str(uuid.uuid4()))
    assert result.returncode == 2
    assert "the following arguments are required: --reason" in result.stderr


def test_the_reason_is_required_and_must_not_be_blank() -> None:
    run = failed_run()
    error, _ = run_failing("saga_retry", str(run.pk))
    assert "--reason" in str(error)
    error, _ = run_failing("saga_resolve", str(run.pk), step="charge_payment", reason="   ")
    assert error.returncode == 2
    assert f"A reason is required for saga run {run.pk}" in str(error)
    assert not SagaEvent.objects.exists()


def test_resolve_of_an_unknown_step_exits_2_listing_the_steps() -> None:
    run = failed_run()
    error, _ = run_failing("saga_resolve", str(run.pk), step="refund", reason="x")
    assert error.returncode == 2
    assert f"Saga run {run.pk} has no step 'refund'" in str(error)
    assert "charge_payment" in str(error)


# --- the operator actions ---


def test_saga_retry_retries_a_failed_run_as_the_os_user_and_prints_its_new_status(monkeypatch) -> None:
    monkeypatch.setattr("getpass.getuser", lambda: "carol")
    run = failed_run()
    out = run_command("saga_retry", str(run.pk), reason="refund gateway is back")
    assert out.strip() == f"Saga run {run.pk} is now compensating (by cli:carol)."
    event = SagaEvent.objects.get(run=run, type=EventType.SAGA_RETRIED)
    assert (event.actor, event.data["reason"]) == ("cli:carol", "refund gateway is back")


def test_saga_resolve_records_the_actor_and_ends_the_run_compensated() -> None:
    run = failed_run()
    out = run_command(
        "saga_resolve", str(run.pk), "--step", "charge_payment", "--reason", "refunded by hand", "--actor", "alice"
    )
    assert out.strip() == f"Saga run {run.pk} is now compensated (by alice)."
    event = SagaEvent.objects.get(run=run, type=EventType.COMPENSATION_RESOLVED)
    assert (event.actor, event.step, event.data["reason"]) == ("alice", "charge_payment", "refunded by hand")


def test_saga_cancel_json_prints_the_new_status() -> None:
    run = SagaRunFactory(status=RunStatus.PENDING)
    out = run_command("saga_cancel", str(run.pk), "--reason", "duplicate order", "--actor", "bob", "--json")
    assert json.loads(out) == {"run": str(run.pk), "status": "cancelled", "actor": "bob"}


def test_saga_retry_and_resolve_json_print_the_new_status() -> None:
    run = failed_run()
    out = run_command("saga_resolve", str(run.pk), "--step", "charge_payment", "--reason", "by hand", "--json")
    assert json.loads(out)["status"] == "compensated"
    other = failed_run()
    out = run_command("saga_retry", str(other.pk), "--reason", "back", "--actor", "dan", "--json")
    assert json.loads(out) == {"run": str(other.pk), "status": "compensating", "actor": "dan"}


@pytest.mark.parametrize(
    ("command", "status", "extra", "message"),
    [
        ("saga_cancel", RunStatus.COMPLETED, [], "a finished run cannot be cancelled"),
        ("saga_retry", RunStatus.COMPLETED, [], "a finished run cannot be retried"),
        ("saga_resolve", RunStatus.COMPENSATING, ["--step", "charge_payment"], "only be resolved by hand"),
    ],
)
def test_an_action_not_allowed_in_the_runs_state_exits_3_with_the_reason(
    command: str, status: str, extra: list[str], message: str
) -> None:
    run = SagaRunFactory(status=status, step_statuses=COMPENSATION_FAILED)
    error, out = run_failing(command, str(run.pk), "--reason", "please", *extra)
    assert error.returncode == 3
    assert message in str(error)
    assert str(run.pk) in str(error)
    assert out == ""
    run.refresh_from_db()
    assert run.status == status


# --- saga_diagnose ---


def test_saga_diagnose_of_a_failed_run_finds_the_exhausted_compensation_and_exits_1(settings) -> None:
    settings.SAGAS = {**settings.SAGAS, "FLOWER_URL": "http://flower:5555/"}
    run = failed_run()
    task_id = f"{run.pk}:charge_payment:compensate:3"
    run.steps.filter(name="charge_payment").update(compensation_task_id=task_id, worker="w1@box", worker_pid=4242)
    error, out = run_failing("saga_diagnose", str(run.pk), "--no-workers")
    assert error.returncode == 1
    assert "compensation_exhausted" in str(error)
    assert "[compensation_exhausted]" in out
    assert "'charge_payment' gave up after 3 attempt(s): refund gateway down" in out
    assert f"manage.py saga_resolve {run.pk} --step charge_payment" in out
    # The task to look at, the worker process that ran it, and its page in Flower.
    assert f"  task {task_id} (ran in w1@box pid 4242): http://flower:5555/task/{task_id}" in out


def test_saga_diagnose_names_the_task_without_a_link_when_no_flower_url_is_set(settings) -> None:
    settings.SAGAS = {**settings.SAGAS, "FLOWER_URL": ""}
    run = failed_run()
    task_id = f"{run.pk}:charge_payment:compensate:3"
    run.steps.filter(name="charge_payment").update(compensation_task_id=task_id)
    _, out = run_failing("saga_diagnose", str(run.pk), "--no-workers", "--json")
    (finding,) = json.loads(out)["findings"]
    assert (finding["task_id"], finding["worker"], finding["flower"]) == (task_id, "", "")


def test_saga_diagnose_of_a_stale_run_finds_its_lease_expired() -> None:
    run = SagaRunFactory(status=RunStatus.EXECUTING, step_statuses={"create_order": StepStatus.SUCCEEDED})
    make_stale(run)
    error, out = run_failing("saga_diagnose", str(run.pk), "--no-workers", "--json")
    assert error.returncode == 1
    data = json.loads(out)
    assert data["run"] == str(run.pk)
    assert [f["cause"] for f in data["findings"]] == ["lease_expired"]
    assert set(data["findings"][0]) == {"cause", "summary", "action", "task_id", "worker", "flower"}


def test_saga_diagnose_of_a_healthy_run_finds_no_problem_and_exits_0() -> None:
    run = SagaRunFactory(status=RunStatus.COMPLETED)
    assert "No problem found." in run_command("saga_diagnose", str(run.pk))
    assert json.loads(run_command("saga_diagnose", str(run.pk), "--json"))["findings"] == []


def test_saga_diagnose_asks_the_workers_unless_told_not_to() -> None:
    # Tests without a worker fixture send saga tasks to a queue no worker consumes (tests/conftest.py).
    run = SagaRunFactory(status=RunStatus.EXECUTING)
    error, out = run_failing("saga_diagnose", str(run.pk), "--json")
    assert {f["cause"] for f in json.loads(out)["findings"]} & {"no_worker", "broker_unreachable"}
    assert error.returncode == 1
    assert "No problem found." in run_command("saga_diagnose", str(run.pk), "--no-workers")


# --- saga_health ---


def test_saga_health_of_healthy_runs_has_no_alerts_and_exits_0() -> None:
    reset_breakers()
    SagaRunFactory(status=RunStatus.COMPLETED, finished_at=timezone.now())
    out = run_command("saga_health", "--hours", "1")
    assert "Saga runs started in the last 1h" in out
    assert "success 100.0%" in out
    assert "Alerts:\n  none" in out
    data = json.loads(run_command("saga_health", "--json"))
    assert (data["started"], data["completed"], data["alerts"]) == (1, 1, [])


def test_saga_health_alerts_exit_1_and_name_the_failing_step() -> None:
    failed_run(finished_at=timezone.now())
    SagaRunFactory(status=RunStatus.COMPLETED, finished_at=timezone.now())
    error, out = run_failing("saga_health")
    assert error.returncode == 1
    assert "awaiting a person: 1" in out.lower()
    rows = [line.split() for line in out.splitlines()]
    assert [PlaceOrder.name, "charge_payment", "compensation_failed", "1"] in rows
    assert ["transient", "3"] in rows  # failed attempts by class
    assert "ALERT Failure rate 50.0% is above 5%" in out
    error, out = run_failing("saga_health", "--json")
    assert error.returncode == 1
    data = json.loads(out)
    assert (data["failed"], data["failure_rate"]) == (1, 0.5)
    assert any(alert.startswith("Failure rate") for alert in data["alerts"])


def test_saga_health_refuses_a_window_that_is_not_positive() -> None:
    error, _ = run_failing("saga_health", "--hours", "0")
    assert error.returncode == 2


# --- saga_rebuild ---


def _completed_run(django_capture_on_commit_callbacks) -> SagaRun:
    from sagas import runner
    from tests.testapp.sagas import Flaky

    with django_capture_on_commit_callbacks():
        run = Flaky.start({"fail_times": 1})
    for step, attempt in (("first", 1), ("flaky", 1), ("flaky", 2)):
        runner.execute_step(run_id=str(run.pk), step=step, task_id=f"{run.pk}:{step}:{attempt}")
    return SagaRun.objects.get(pk=run.pk)


def test_saga_rebuild_says_the_rows_agree_with_the_log(django_capture_on_commit_callbacks) -> None:
    run = _completed_run(django_capture_on_commit_callbacks)

    out = run_command("saga_rebuild", str(run.pk))
    assert "flaky: succeeded, 2 attempt(s)" in out
    assert "The stored rows agree with the event log." in out
    data = json.loads(run_command("saga_rebuild", str(run.pk), "--json"))
    assert data["differences"] == []
    assert data["state"]["status"] == RunStatus.COMPLETED


def test_saga_rebuild_exits_1_naming_each_difference(django_capture_on_commit_callbacks) -> None:
    run = _completed_run(django_capture_on_commit_callbacks)
    SagaRun.objects.filter(pk=run.pk).update(status=RunStatus.FAILED)

    error, out = run_failing("saga_rebuild", str(run.pk))

    assert error.returncode == 1
    assert "run.status: rebuilt 'completed', stored 'failed'" in out
    SagaRun.objects.filter(pk=run.pk).update(status=RunStatus.COMPLETED)  # the session check rebuilds it too


def test_saga_rebuild_of_a_bad_id_exits_2() -> None:
    error, _ = run_failing("saga_rebuild", "not-a-uuid")
    assert error.returncode == 2


def test_saga_resolve_with_an_output_resolves_a_step_failed_after_the_pivot() -> None:
    run = forward_failed_run()
    out = run_command(
        "saga_resolve",
        str(run.pk),
        "--step",
        "ship",
        "--reason",
        "couriered",
        "--output",
        '{"tracking": "T-9"}',
        "--actor",
        "carol",
    )
    assert out.strip() == f"Saga run {run.pk} is now executing (by carol)."
    assert run.steps.get(name="ship").output == {"tracking": "T-9"}


def test_saga_resolve_with_an_output_that_is_not_json_exits_2_and_records_nothing() -> None:
    run = forward_failed_run()
    error, _ = run_failing("saga_resolve", str(run.pk), "--step", "ship", "--reason", "x", "--output", "{tracking")
    assert error.returncode == 2
    assert "The --output value is not valid JSON" in str(error)
    assert not SagaEvent.objects.filter(run=run).exists()


def test_saga_signal_delivers_the_data_and_prints_the_status() -> None:
    run = waiting_run()
    out = run_command("saga_signal", str(run.pk), "approved", "--data", '{"ok": true}', "--actor", "dana", "--json")
    assert json.loads(out) == {"run": str(run.pk), "status": "executing", "actor": "dana"}
    assert run.steps.get(name="approved").output == {"ok": True}


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["rejected"], 3, "has no Wait step 'rejected'"),
        (["approved", "--data", "{nope"], 2, "The --data value is not valid JSON"),
        (["approved", "--data", "[1]"], 2, "must be a JSON object"),
    ],
)
def test_saga_signal_refusals_exit_with_their_code(args: list[str], code: int, message: str) -> None:
    run = waiting_run()
    error, _ = run_failing("saga_signal", str(run.pk), *args)
    assert error.returncode == code
    assert message in str(error)
    assert not SagaEvent.objects.filter(run=run).exists()


# --- input a command cannot use: exit 2 with a message, nothing done ---

SURROGATE = "\udcff"  # what Python makes of the byte 0xff in argv, which is not UTF-8
NUL = "refunded\x00by hand"
CANNOT_STORE = {
    SURROGATE: "must be valid Unicode (it holds an unpaired surrogate)",
    NUL: "may not contain NUL characters",
}


@pytest.mark.parametrize("text", [SURROGATE, NUL], ids=["surrogate", "nul"])
@pytest.mark.parametrize(
    ("command", "option"),
    [
        ("saga_retry", "--reason"),
        ("saga_retry", "--actor"),
        ("saga_cancel", "--reason"),
        ("saga_cancel", "--actor"),
        ("saga_resolve", "--reason"),
        ("saga_resolve", "--actor"),
        ("saga_resolve", "--step"),
    ],
)
def test_an_operator_action_with_text_the_database_cannot_take_exits_2_and_changes_nothing(
    command: str, option: str, text: str
) -> None:
    # Runs the action would change given plain text (the tests of each action above).
    run = SagaRunFactory(status=RunStatus.PENDING) if command == "saga_cancel" else failed_run()
    given = {"--reason": "refund gateway is back", "--actor": "alice"}
    if command == "saga_resolve":
        given["--step"] = "charge_payment"
    given[option] = text

    error, out = run_failing(command, str(run.pk), *(item for pair in given.items() for item in pair))

    assert error.returncode == 2
    assert f"Text in the {option} argument {CANNOT_STORE[text]}" in str(error)
    assert out == ""
    assert not SagaEvent.objects.filter(run=run).exists()
    assert SagaRun.objects.get(pk=run.pk).status == run.status


@pytest.mark.parametrize("text", [SURROGATE, NUL], ids=["surrogate", "nul"])
@pytest.mark.parametrize("position", ["signal name", "--reason", "--actor"])
def test_a_signal_with_text_the_database_cannot_take_exits_2_and_records_nothing(position: str, text: str) -> None:
    run = waiting_run()
    given = {"signal name": "approved", "--reason": "approved by ops", "--actor": "dana"}
    given[position] = text
    name = given.pop("signal name")

    error, _ = run_failing("saga_signal", str(run.pk), name, *(item for pair in given.items() for item in pair))

    assert error.returncode == 2
    assert f"Text in the {position} argument {CANNOT_STORE[text]}" in str(error)
    assert not SagaEvent.objects.filter(run=run).exists()
    assert run.steps.get(name="approved").status == StepStatus.WAITING


@pytest.mark.parametrize("text", [SURROGATE, NUL], ids=["surrogate", "nul"])
@pytest.mark.parametrize(("command", "option"), [("saga_list", "--saga"), ("saga_breakers", "--reset")])
def test_a_name_to_look_up_that_the_database_cannot_take_exits_2(command: str, option: str, text: str) -> None:
    error, out = run_failing(command, option, text)
    assert error.returncode == 2
    assert f"Text in the {option} argument {CANNOT_STORE[text]}" in str(error)
    assert out == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--limit", "0"], "--limit must be a whole number from 1 to 10000, not '0'."),
        (["--limit", "-5"], "--limit must be a whole number from 1 to 10000, not '-5'."),
        (["--limit", "10001"], "--limit must be a whole number from 1 to 10000, not '10001'."),
        (["--limit", "99999999999999999999999"], "from 1 to 10000, not '99999999999999999999999'."),
        (["--limit", "9" * 5000], f"--limit must be a whole number from 1 to 10000, not '{'9' * 38}…."),
        (["--since", "0"], "--since must be a number of hours above 0, not 0.0."),
        (["--since", "nan"], "--since must be a number of hours above 0, not nan."),
        (["--since", "inf"], "--since must be a number of hours above 0, not inf."),
        (["--since", "1e308"], "--since 1e+308 hours reaches back before the year 1"),
        (["--since", "99999999999"], "--since 1e+11 hours reaches back before the year 1"),
    ],
)
def test_saga_list_refuses_a_limit_or_window_it_cannot_use(args: list[str], message: str) -> None:
    error, out = run_failing("saga_list", *args)
    assert error.returncode == 2
    assert message in str(error)
    assert out == ""


def test_saga_list_refuses_a_limit_given_as_a_number_out_of_range() -> None:
    error, _ = run_failing("saga_list", limit=10**30)  # call_command passes it as it is, past argparse
    assert error.returncode == 2
    assert f"--limit must be a whole number from 1 to 10000, not {10**30}." in str(error)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ('{"ok": ' + "9" * 5000 + "}", "A number in the --data value has more than 4300 digits"),
        ('{"ok": ' + "[" * 100_000 + "]" * 100_000 + "}", "The --data value is nested deeper than 100 levels"),
    ],
    ids=["long number", "deep"],
)
def test_saga_signal_with_data_it_cannot_read_exits_2_and_records_nothing(data: str, message: str) -> None:
    run = waiting_run()
    error, _ = run_failing("saga_signal", str(run.pk), "approved", "--data", data)
    assert error.returncode == 2
    assert message in str(error)
    assert not SagaEvent.objects.filter(run=run).exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["saga_retry", str(uuid.uuid4()), "--reason", b"\xff"], "Text in the --reason argument must be valid Unicode"),
        (["saga_purge", "--older-than", "99999999999999d"], "'99999999999999d' is too long an age"),
    ],
    ids=["undecodable reason", "overflowing age"],
)
def test_manage_py_exits_2_with_the_message_and_no_traceback_for_input_it_cannot_use(
    args: list[str | bytes], message: str
) -> None:
    result = manage(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
