"""Retention: purging finished runs with every row they own, in batches, never an unfinished run or an unsent
message; the saga_purge command and the scheduled purge."""

from __future__ import annotations

import io
import json
import os
import stat
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction
from django.utils import timezone

from sagas import retention, services, tasks
from sagas.masking import MASK
from sagas.models import SagaEvent, SagaOutbox, SagaReceipt, SagaRun, SagaSnapshot, SagaStepRun
from sagas.services.purge import MAX_BATCH_SIZE, PurgeReport, purge_runs
from sagas.states import EventType, RunStatus
from tests.factories import SagaRunFactory
from tests.testapp.sagas import Diamond

pytestmark = pytest.mark.django_db

MONTH = timedelta(days=30)
# Runs a test finishes now are 40 days old to a purge that believes it is this far ahead.
LATER = timedelta(days=40)


# Values under keys in SAGAS["MASKED_KEYS"] ("card", "cvv"), one of them nested.
CARD_NUMBER = "4111111111111111"
CVV = "9731"
SECRET_PAYLOAD = {"order": 1, "card_number": CARD_NUMBER, "billing": {"cvv": CVV, "city": "Lyon"}}


def finished_run(
    django_capture_on_commit_callbacks: Any,
    *,
    relayed: bool = True,
    receipt: bool = True,
    payload: dict[str, Any] | None = None,
) -> SagaRun:
    """A tests.diamond run started (with ``payload``, default ``{"order": 1}``) and cancelled by the framework:
    events, a snapshot per event (the settings fixture sets SNAPSHOT_EVERY to 1), and outbox messages (a receiver
    listens), relayed unless ``relayed`` is False, each with a receipt."""
    with django_capture_on_commit_callbacks(execute=relayed):
        run = Diamond.start(payload or {"order": 1})
    with django_capture_on_commit_callbacks(execute=relayed):
        services.run_cancel(run_id=run.pk, reason="test", actor="tests")
    if receipt:
        for message_id in SagaOutbox.objects.filter(run=run).values_list("id", flat=True):
            SagaReceipt.objects.create(receiver="tests.diamond_ledger", message_id=message_id)
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    return run


def planted(status: str, finished_ago: timedelta | None = MONTH + timedelta(days=1), **fields: Any) -> SagaRun:
    """A run planted by the factory (no events) in ``status``, finished ``finished_ago`` ago (None: unfinished)."""
    finished = timezone.now() - finished_ago if finished_ago is not None else None
    return SagaRunFactory(status=status, finished_at=finished, **fields)


def owned_rows(run_ids: list[uuid.UUID]) -> dict[str, int]:
    outbox = SagaOutbox.objects.filter(run_id__in=run_ids)
    return {
        "runs": SagaRun.objects.filter(pk__in=run_ids).count(),
        "steps": SagaStepRun.objects.filter(run_id__in=run_ids).count(),
        "events": SagaEvent.objects.filter(run_id__in=run_ids).count(),
        "snapshots": SagaSnapshot.objects.filter(run_id__in=run_ids).count(),
        "outbox": outbox.count(),
        "receipts": SagaReceipt.objects.filter(message_id__in=outbox.values("id")).count(),
    }


def purge(**options: Any) -> PurgeReport:
    return purge_runs(**{"older_than": MONTH, **options})


@pytest.fixture
def snapshot_every_event(settings: Any) -> None:
    settings.SAGAS = {**settings.SAGAS, "SNAPSHOT_EVERY": 1}


@pytest.mark.usefixtures("snapshot_every_event")
def test_a_run_finished_before_the_cutoff_goes_with_every_row_it_owns(django_capture_on_commit_callbacks) -> None:
    first, second = (finished_run(django_capture_on_commit_callbacks) for _ in range(2))
    owned = owned_rows([first.pk, second.pk])
    assert all(owned.values()), owned  # every table holds rows of theirs

    report = purge(now=timezone.now() + LATER)

    assert report.runs == 2
    assert report.rows == owned
    assert owned_rows([first.pk, second.pk]) == dict.fromkeys(owned, 0)


def test_unfinished_younger_and_failed_runs_stay() -> None:
    old = planted(RunStatus.COMPLETED)
    young = planted(RunStatus.COMPLETED, finished_ago=MONTH - timedelta(days=1))
    kept = [
        young,
        planted(RunStatus.FAILED),  # awaits a person: purged only when named
        *(planted(status, finished_ago=None) for status in (RunStatus.PENDING, RunStatus.EXECUTING)),
        *(planted(status, finished_ago=None) for status in (RunStatus.COMPENSATING, RunStatus.TIMEOUT)),
    ]

    report = purge()

    assert report.runs == 1
    assert not SagaRun.objects.filter(pk=old.pk).exists()
    assert SagaRun.objects.filter(pk__in=[run.pk for run in kept]).count() == len(kept)
    assert report.rows["steps"] == 5  # the factory's PlaceOrder steps


def test_statuses_choose_which_finished_runs_go() -> None:
    runs = {status: planted(status) for status in (RunStatus.COMPLETED, RunStatus.COMPENSATED, RunStatus.FAILED)}

    assert purge(statuses=[RunStatus.COMPENSATED, RunStatus.FAILED]).runs == 2

    left = set(SagaRun.objects.values_list("status", flat=True))
    assert left == {RunStatus.COMPLETED}
    assert SagaRun.objects.get().pk == runs[RunStatus.COMPLETED].pk


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"statuses": [RunStatus.EXECUTING]}, "Only finished runs are purged"),
        ({"statuses": []}, "No statuses to purge"),
        ({"older_than": timedelta(minutes=59)}, "at least 1:00:00"),
        ({"batch_size": 0}, "from 1 to 10000, not 0"),
        ({"batch_size": MAX_BATCH_SIZE + 1}, "from 1 to 10000, not 10001"),
        ({"older_than": timedelta(days=999_999_999)}, "would have finished before the year 1"),
        ({"dry_run": True, "archive": io.StringIO()}, "archives nothing"),
        ({"archive_unmasked": True}, "archive_unmasked says how to write an archive, and none was given"),
        ({"archive": "purged\x00.jsonl"}, "may not contain NUL characters"),
    ],
)
def test_a_purge_that_could_take_what_it_must_not_is_refused(options: dict[str, Any], message: str) -> None:
    run = planted(RunStatus.COMPLETED)
    with pytest.raises(ValueError, match=message):
        purge(**options)
    assert SagaRun.objects.filter(pk=run.pk).exists()


@pytest.mark.usefixtures("snapshot_every_event")
def test_a_dry_run_deletes_nothing_and_counts_what_would_go(django_capture_on_commit_callbacks) -> None:
    runs = [finished_run(django_capture_on_commit_callbacks), finished_run(django_capture_on_commit_callbacks)]
    before = owned_rows([run.pk for run in runs])

    dry = purge(now=timezone.now() + LATER, dry_run=True)

    assert owned_rows([run.pk for run in runs]) == before
    assert (dry.dry_run, dry.runs, dry.rows) == (True, 2, before)
    real = purge(now=timezone.now() + LATER)
    assert (real.runs, real.rows) == (dry.runs, dry.rows)


def test_runs_go_in_batches_of_the_batch_size() -> None:
    for _ in range(7):
        planted(RunStatus.COMPLETED)

    report = purge(batch_size=3)

    assert (report.runs, report.batches) == (7, 3)
    assert report.longest_batch_seconds <= report.seconds
    assert not SagaRun.objects.exists()


def test_a_family_kept_does_not_stop_the_batches_after_it() -> None:
    # The oldest parent keeps its child running: the purge moves past it instead of finding it again.
    parent = planted(RunStatus.COMPLETED, finished_ago=MONTH * 3)
    planted(RunStatus.EXECUTING, finished_ago=None, parent=parent, parent_step="child")
    others = [planted(RunStatus.COMPLETED) for _ in range(4)]

    report = purge(batch_size=1)

    assert (report.runs, report.kept, report.batches) == (4, 1, 5)
    assert not SagaRun.objects.filter(pk__in=[run.pk for run in others]).exists()


def test_the_archive_has_every_event_of_every_purged_run_as_a_json_line(
    django_capture_on_commit_callbacks, tmp_path: Path
) -> None:
    runs = [finished_run(django_capture_on_commit_callbacks) for _ in range(2)]
    stored = {
        run.pk: list(SagaEvent.objects.filter(run=run).order_by("seq").values("seq", "type", "step", "data", "actor"))
        for run in runs
    }
    archive = tmp_path / "purged.jsonl"
    archive.write_text('{"earlier": "lines are kept"}\n')
    archive.chmod(0o600)  # a file of the user's own that no one else may read: appended to

    report = purge(now=timezone.now() + LATER, archive=archive)

    lines = [json.loads(line) for line in archive.read_text().splitlines()]
    assert lines[0] == {"earlier": "lines are kept"}  # appended to
    archived = lines[1:]
    assert len(archived) == report.rows["events"] == sum(len(events) for events in stored.values())
    for run in runs:
        mine = [line for line in archived if line["run"]["id"] == str(run.pk)]
        assert [{key: line[key] for key in ("seq", "type", "step", "data", "actor")} for line in mine] == stored[run.pk]
        assert mine[0]["run"] == {
            "id": str(run.pk),
            "saga": "tests.diamond",
            "version": run.version,
            "status": "cancelled",
            "parent": None,
            "correlation_id": run.correlation_id,
            "created_at": _iso(run.created_at),
            "started_at": None,
            "finished_at": _iso(run.finished_at),
        }
        assert mine[0]["caused_by"] is None
        assert mine[-1]["caused_by"] in {line["seq"] for line in mine[:-1]}  # SagaCancelled follows SagaStarted


def test_the_archive_may_be_an_open_stream() -> None:
    planted(RunStatus.COMPLETED)  # a planted run has no events: nothing to write
    stream = io.StringIO()

    assert purge(archive=stream).runs == 1
    assert stream.getvalue() == ""


def archived_start(text: str) -> dict[str, Any]:
    """The SagaStarted line of the one run in an archive."""
    lines = [json.loads(line) for line in text.splitlines()]
    (started,) = (line for line in lines if line["type"] == EventType.SAGA_STARTED)
    return started


@pytest.mark.parametrize(
    ("unmasked", "payload"),
    [
        (False, {"order": 1, "card_number": MASK, "billing": {"cvv": MASK, "city": "Lyon"}}),
        (True, SECRET_PAYLOAD),
    ],
)
def test_the_archive_masks_secrets_unless_asked_for_them_in_clear(
    django_capture_on_commit_callbacks, unmasked: bool, payload: dict[str, Any]
) -> None:
    run = finished_run(django_capture_on_commit_callbacks, payload=SECRET_PAYLOAD)
    stored = SagaEvent.objects.get(run=run, type=EventType.SAGA_STARTED).data
    assert stored["payload"] == SECRET_PAYLOAD  # in clear in the database, which the run needs
    stream = io.StringIO()

    assert purge(now=timezone.now() + LATER, archive=stream, archive_unmasked=unmasked).runs == 1

    assert archived_start(stream.getvalue())["data"]["payload"] == payload
    assert (CARD_NUMBER in stream.getvalue(), CVV in stream.getvalue()) == (unmasked, unmasked)


def test_a_parent_goes_with_its_children_and_grandchildren_once_all_are_finished_and_old() -> None:
    parent = planted(RunStatus.COMPLETED)
    child = planted(RunStatus.COMPLETED, parent=parent, parent_step="child")
    grandchild = planted(RunStatus.COMPENSATED, parent=child, parent_step="child")

    report = purge()

    assert report.runs == 3
    assert not SagaRun.objects.filter(pk__in=[parent.pk, child.pk, grandchild.pk]).exists()


@pytest.mark.parametrize(
    ("child_status", "child_finished_ago"),
    [
        (RunStatus.EXECUTING, None),  # still running: its end moves the parent's step
        (RunStatus.COMPLETED, timedelta(days=1)),  # too young
        (RunStatus.FAILED, MONTH * 2),  # not a status asked for
    ],
)
def test_a_finished_parent_stays_while_a_child_of_its_may_not_go(
    child_status: str, child_finished_ago: timedelta | None
) -> None:
    parent = planted(RunStatus.COMPENSATED)
    child = planted(child_status, finished_ago=child_finished_ago, parent=parent, parent_step="child")
    grandchild = planted(RunStatus.COMPLETED, parent=child, parent_step="child")

    report = purge()

    assert (report.runs, report.kept) == (0, 1)
    assert SagaRun.objects.filter(pk__in=[parent.pk, child.pk, grandchild.pk]).count() == 3


def test_a_finished_child_stays_while_its_parent_is_unfinished() -> None:
    # A completed child is undone when its parent compensates: it goes only with its parent.
    parent = planted(RunStatus.EXECUTING, finished_ago=None)
    child = planted(RunStatus.COMPLETED, parent=parent, parent_step="child")

    assert purge().runs == 0
    assert SagaRun.objects.filter(pk=child.pk).exists()


def test_a_run_with_an_unrelayed_message_stays_until_it_is_relayed(django_capture_on_commit_callbacks) -> None:
    unsent = finished_run(django_capture_on_commit_callbacks, relayed=False, receipt=False)
    sent = finished_run(django_capture_on_commit_callbacks)

    report = purge(now=timezone.now() + LATER)

    assert (report.runs, report.kept) == (1, 1)
    assert SagaRun.objects.filter(pk=unsent.pk).exists()
    assert not SagaRun.objects.filter(pk=sent.pk).exists()
    SagaOutbox.objects.filter(run=unsent).update(published_at=timezone.now())
    assert purge(now=timezone.now() + LATER).runs == 1


@pytest.mark.django_db(transaction=True)
def test_a_run_another_transaction_holds_is_skipped_without_waiting() -> None:
    held, other = planted(RunStatus.COMPLETED), planted(RunStatus.COMPLETED)
    parent = planted(RunStatus.COMPLETED)
    held_child = planted(RunStatus.COMPLETED, parent=parent, parent_step="child")
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic():
                list(SagaRun.objects.select_for_update().filter(pk__in=[held.pk, held_child.pk]))
                locked.set()
                release.wait(60)
        finally:
            connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(60)
        report = purge()
    finally:
        release.set()
        holder.join(60)

    assert (report.runs, report.kept) == (1, 1)  # the held run is passed over; the parent of the held child is kept
    assert not SagaRun.objects.filter(pk=other.pk).exists()
    assert SagaRun.objects.filter(pk__in=[held.pk, parent.pk, held_child.pk]).count() == 3


# --- manage.py saga_purge ---


def run_command(*args: str) -> str:
    out = io.StringIO()
    call_command("saga_purge", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_saga_purge_says_what_it_purged() -> None:
    planted(RunStatus.COMPLETED)
    planted(RunStatus.CANCELLED)
    planted(RunStatus.FAILED)

    out = run_command("--older-than", "30d")

    assert out.startswith("Purged 2 run(s) cancelled, compensated, completed that finished before ")
    assert "runs 2, steps 10, events 0, snapshots 0, outbox 0, receipts 0." in out
    assert "1 batch(es) in " in out
    assert SagaRun.objects.get().status == RunStatus.FAILED


def test_saga_purge_dry_run_in_json_with_statuses_and_batch_size() -> None:
    for _ in range(3):
        planted(RunStatus.FAILED, finished_ago=timedelta(hours=13))

    out = json.loads(
        run_command("--older-than", "12h", "--status", "failed", "--status", "completed", "--batch-size", "2",
                    "--dry-run", "--json")
    )  # fmt: skip

    assert (out["dry_run"], out["runs"], out["batches"], out["rows"]["steps"]) == (True, 3, 2, 15)
    assert out["statuses"] == ["completed", "failed"]
    assert SagaRun.objects.count() == 3


def test_saga_purge_archives_to_a_file(django_capture_on_commit_callbacks, tmp_path: Path) -> None:
    run = finished_run(django_capture_on_commit_callbacks)
    SagaRun.objects.filter(pk=run.pk).update(finished_at=timezone.now() - timedelta(hours=2))
    events = SagaEvent.objects.filter(run=run).count()
    archive = tmp_path / "archive.jsonl"

    out = run_command("--older-than", "3600s", "--archive", str(archive))

    assert f"Their events are archived in {archive}." in out
    assert len(archive.read_text().splitlines()) == events


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--older-than", "30"], "'30' is not an age"),
        (["--older-than", "thirty days"], "is not an age"),
        (["--older-than", "59m"], "at least 1:00:00"),
        (["--older-than", "30d", "--status", "executing"], "--status executing: only finished runs are purged"),
        (["--older-than", "30d", "--dry-run", "--archive", "x.jsonl"], "archives nothing"),
        (["--older-than", "99999999999999d"], "'99999999999999d' is too long an age: the longest is 999999999d."),
        (["--older-than", "9" * 5000 + "s"], f"'{'9' * 29}…' is too long an age"),
        (["--older-than", "2739726w"], "Runs finished more than 19178082 days ago would have finished before the year"),
        (["--older-than", "30d", "--batch-size", "9" * 5000], "--batch-size must be a whole number from 1 to 10000"),
        (["--older-than", "30d", "--batch-size", "0"], "--batch-size must be a whole number from 1 to 10000, not '0'"),
        (["--older-than", "30d", "--batch-size", "10001"], "from 1 to 10000, not '10001'"),
        (["--older-than", "30d", "--status", "\udcff"], "only finished runs are purged"),
        (["--older-than", "\udcff"], "'\\udcff' is not an age"),
        (["--older-than", "30d", "--archive-unmasked"], "--archive-unmasked says how to write the archive"),
        (["--older-than", "30d", "--archive", "purged\x00.jsonl"], "may not contain NUL characters"),
    ],
)
def test_saga_purge_exits_2_on_bad_input(args: list[str], message: str) -> None:
    run = planted(RunStatus.COMPLETED)
    with pytest.raises(CommandError) as raised:
        run_command(*args)
    assert raised.value.returncode == 2
    assert message in str(raised.value)
    assert SagaRun.objects.filter(pk=run.pk).exists()


def test_saga_purge_exits_2_when_the_archive_cannot_be_written(tmp_path: Path) -> None:
    run = planted(RunStatus.COMPLETED)
    with pytest.raises(CommandError) as raised:
        run_command("--older-than", "30d", "--archive", str(tmp_path / "missing" / "archive.jsonl"))
    assert raised.value.returncode == 2
    assert SagaRun.objects.filter(pk=run.pk).exists()


@pytest.fixture
def shared_umask() -> Iterator[None]:
    """A umask under which new files are readable by everyone (0o022, a common default): the archive's mode must
    not depend on the umask the command runs under."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def secret_run_two_hours_old(django_capture_on_commit_callbacks: Any) -> SagaRun:
    run = finished_run(django_capture_on_commit_callbacks, payload=SECRET_PAYLOAD)
    SagaRun.objects.filter(pk=run.pk).update(finished_at=timezone.now() - timedelta(hours=2))
    return run


@pytest.mark.usefixtures("shared_umask")
def test_saga_purge_creates_the_archive_readable_by_its_owner_only_with_secrets_masked(
    django_capture_on_commit_callbacks, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = secret_run_two_hours_old(django_capture_on_commit_callbacks)
    archive = tmp_path / "archive.jsonl"
    for name in ("chmod", "fchmod"):  # the mode is the creating call's: the file is never open to others
        monkeypatch.setattr(os, name, lambda *args, **kwargs: pytest.fail("the archive was chmodded"))

    out = run_command("--older-than", "3600s", "--archive", str(archive))

    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    text = archive.read_text()
    assert CARD_NUMBER not in text
    assert CVV not in text
    started = archived_start(text)
    assert started["run"]["id"] == str(run.pk)
    assert started["data"]["payload"] == {"order": 1, "card_number": MASK, "billing": {"cvv": MASK, "city": "Lyon"}}
    assert "in clear" not in out


@pytest.mark.usefixtures("shared_umask")
def test_saga_purge_archive_unmasked_writes_the_secrets_in_clear_and_says_so(
    django_capture_on_commit_callbacks, tmp_path: Path
) -> None:
    secret_run_two_hours_old(django_capture_on_commit_callbacks)
    archive = tmp_path / "legal-hold.jsonl"

    out = run_command("--older-than", "3600s", "--archive", str(archive), "--archive-unmasked")

    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    assert archived_start(archive.read_text())["data"]["payload"] == SECRET_PAYLOAD
    assert "The archive holds their secrets in clear (--archive-unmasked)" in out


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620], ids=oct)
def test_saga_purge_refuses_to_append_to_an_archive_others_may_read_or_write(tmp_path: Path, mode: int) -> None:
    run = planted(RunStatus.COMPLETED)
    archive = tmp_path / "archive.jsonl"
    archive.write_text("earlier\n")
    archive.chmod(mode)

    with pytest.raises(CommandError) as raised:
        run_command("--older-than", "30d", "--archive", str(archive))

    assert raised.value.returncode == 2
    assert f"may be read or written by others (mode {mode:#o}): run `chmod 600` on it" in str(raised.value)
    assert SagaRun.objects.filter(pk=run.pk).exists()
    assert (archive.read_text(), stat.S_IMODE(archive.stat().st_mode)) == ("earlier\n", mode)  # left as it was


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user")
def test_saga_purge_refuses_to_append_to_an_archive_of_another_user(tmp_path: Path) -> None:
    run = planted(RunStatus.COMPLETED)
    archive = tmp_path / "archive.jsonl"
    archive.write_text("")
    archive.chmod(0o600)
    os.chown(archive, 4242, -1)

    with pytest.raises(CommandError) as raised:
        run_command("--older-than", "30d", "--archive", str(archive))

    assert raised.value.returncode == 2
    assert "belongs to another user (uid 4242)" in str(raised.value)
    assert SagaRun.objects.filter(pk=run.pk).exists()


def test_saga_purge_archives_to_a_device_as_it_is() -> None:
    planted(RunStatus.COMPLETED)
    assert "Purged 1 run(s)" in run_command("--older-than", "30d", "--archive", os.devnull)
    assert stat.S_IMODE(os.stat(os.devnull).st_mode) == 0o666  # neither refused nor changed


# --- the scheduled purge ---


def purge_schedule() -> Any:
    from django_celery_beat.models import PeriodicTask

    return PeriodicTask.objects.filter(name=retention.PURGE_SCHEDULE_NAME).first()


def test_the_purge_is_not_on_the_beat_schedule_by_default() -> None:
    retention.ensure_purge_schedule()
    assert purge_schedule() is None


def test_purge_after_puts_the_purge_on_the_beat_schedule_and_none_takes_it_off(settings: Any) -> None:
    settings.SAGAS = {**settings.SAGAS, "PURGE_AFTER": "30d", "PURGE_INTERVAL": 600}
    retention.ensure_purge_schedule()
    entry = purge_schedule()
    assert (entry.task, entry.enabled, entry.interval.every) == ("sagas.purge", True, 600)

    settings.SAGAS = {**settings.SAGAS, "PURGE_AFTER": None}
    retention.ensure_purge_schedule()
    assert purge_schedule() is None


def test_the_purge_task_purges_what_is_older_than_purge_after(settings: Any) -> None:
    old = planted(RunStatus.COMPLETED, finished_ago=timedelta(days=8))
    young = planted(RunStatus.COMPLETED, finished_ago=timedelta(days=6))
    settings.SAGAS = {**settings.SAGAS, "PURGE_AFTER": timedelta(weeks=1), "PURGE_BATCH": 1}

    assert tasks.purge() == 1  # called as a function: apply() would close the test's connection after it

    assert list(SagaRun.objects.values_list("pk", flat=True)) == [young.pk]
    assert not SagaRun.objects.filter(pk=old.pk).exists()


def test_the_purge_task_does_nothing_when_purge_after_is_not_set() -> None:
    planted(RunStatus.COMPLETED, finished_ago=timedelta(days=365))
    assert tasks.purge() == 0
    assert SagaRun.objects.count() == 1


@pytest.mark.parametrize("value", [60, "5m", "soon", [30], True, 10**20, float("inf"), "99999999999999d"])
def test_a_purge_after_that_is_too_short_or_not_an_age_is_a_configuration_error(settings: Any, value: Any) -> None:
    settings.SAGAS = {**settings.SAGAS, "PURGE_AFTER": value}
    with pytest.raises(ImproperlyConfigured, match="PURGE_AFTER"):
        retention.purge_after()


@pytest.mark.parametrize(
    ("value", "expected"),
    [(7200, timedelta(hours=2)), (5400.0, timedelta(minutes=90)), ("2w", timedelta(days=14)), (None, None)],
)
def test_purge_after_takes_seconds_a_timedelta_or_an_age(settings: Any, value: Any, expected: Any) -> None:
    settings.SAGAS = {**settings.SAGAS, "PURGE_AFTER": value}
    assert retention.purge_after() == expected


@pytest.mark.parametrize(
    ("text", "seconds"), [("3600s", 3600), ("90m", 5400), ("12h", 43200), ("30d", 2592000), (" 2W ", 1209600)]
)
def test_an_age_is_a_whole_number_and_a_unit(text: str, seconds: int) -> None:
    assert retention.parse_age(text) == timedelta(seconds=seconds)


def test_the_longest_age_is_the_longest_timedelta() -> None:
    assert retention.parse_age("999999999d") == timedelta(days=999_999_999)
    assert retention.parse_age("0" * 5000 + "2h") == timedelta(hours=2)  # leading zeros are not counted


@pytest.mark.parametrize("text", ["1000000000d", "142857143w", "99999999999999d", "9" * 5000 + "s"])
def test_an_age_longer_than_the_longest_is_refused_with_a_message(text: str) -> None:
    with pytest.raises(ValueError, match="is too long an age: the longest is 999999999d"):
        retention.parse_age(text)


def _iso(moment: datetime | None) -> str | None:
    """A datetime as DjangoJSONEncoder writes it."""
    if moment is None:
        return None
    text = moment.isoformat()
    if moment.microsecond:
        text = text[:23] + text[26:]
    return text.replace("+00:00", "Z")
