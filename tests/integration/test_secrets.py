"""No masked value leaves: not through choreography (the broker message of a receiver's task, the result backend row
of a failed delivery), not through error text (a step's failures, the run's error, events, the result backend), not
in the admin, not in the API (a real worker, Redis, PostgreSQL)."""

from __future__ import annotations

import json

from django.contrib.auth.models import Permission, User
from django.db.models import Q
from django.forms.models import model_to_dict
from django.test import Client, override_settings
from django.urls import reverse
from django_celery_results.models import TaskResult

from sagaproject.celery import app as celery_app
from sagas import choreography, outbox
from sagas.masking import MASK, masked
from sagas.models import SagaEvent, SagaOutbox, SagaRun, SagaSnapshot, SagaStepRun
from sagas.states import EventType, RunStatus, StepStatus
from sagas.testing import queues
from tests.testapp.sagas import CardParent, LeakySecrets, Secretive
from tests.worker import WorkerProcess, wait_for_run, wait_until

CARD = "4111111111111111"
TOKEN = "tok-live-9f8e7d6c5b4a"
SECRETS = (CARD, TOKEN)
PAYLOAD = {"card_number": CARD, "auth_token": TOKEN, "customer": "ada"}


def assert_no_secret(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} leaked into {where}"


def viewer() -> Client:
    """A staff user who may only view runs and outbox messages."""
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    codenames = ["view_sagarun", "view_sagaoutbox", "view_taskresult"]
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


def test_a_receivers_task_carries_the_message_id_only(worker: WorkerProcess) -> None:
    run = wait_for_run(Secretive.start(PAYLOAD), worker)
    assert run.status == RunStatus.COMPLETED
    message = SagaOutbox.objects.get(run=run, topic="tests.secretive.completed")
    assert message.message["payload"]["card_number"] == CARD  # the receiver still gets the whole message
    task_id = f"{message.pk}:tests.broken_keeper"
    wait_until(lambda: TaskResult.objects.filter(task_id=task_id, status="FAILURE").exists(), worker, "the failure")

    # The result backend's row of the failed delivery: arguments, result and traceback.
    result = TaskResult.objects.get(task_id=task_id)
    assert str(message.pk) in result.task_args
    for field in ("task_args", "task_kwargs", "result", "traceback"):
        assert_no_secret(str(getattr(result, field) or ""), f"TaskResult.{field}")

    # The broker message itself, published again to a queue nobody consumes and read raw from the broker.
    parked = f"{worker.queues[0]}-secrets"
    with override_settings(SAGAS={**_sagas_settings(), "QUEUE": parked}):
        assert outbox._publish(message, outbox._receivers(message))
    with celery_app.connection_for_write() as conn:
        try:
            stored = queues.drain(conn, parked)
            assert len(stored) == len(choreography.receivers_of(message.topic))
            for raw in stored:
                assert json.loads(raw.body)[0] == [str(message.pk)]  # (args, kwargs, options)
                assert_no_secret(raw.envelope + raw.body, "the broker message")
        finally:
            queues.delete(conn, parked)

    # The admin, for a user who may only look, and the API.
    client = viewer()
    pages = {
        "outbox message": reverse("admin:sagas_sagaoutbox_change", args=[message.pk]),
        "outbox list": reverse("admin:sagas_sagaoutbox_changelist"),
        "task result": reverse("admin:django_celery_results_taskresult_change", args=[result.pk]),
        "run page": reverse("admin:sagas_sagarun_change", args=[run.pk]),
        "live run page": reverse("admin:sagas_sagarun_live", args=[run.pk]),
    }
    for name, url in pages.items():
        response = client.get(url)
        assert response.status_code == 200, name
        assert_no_secret(response.content.decode(), f"the admin's {name}")
    outbox_page = client.get(pages["outbox message"]).content.decode()
    assert "ada" in outbox_page  # what is not secret is shown
    for url in (f"/api/runs/{run.pk}/", "/api/runs/"):
        response = client.get(url)
        assert response.status_code == 200, url
        assert_no_secret(response.content.decode(), f"the API's {url}")


def _sagas_settings() -> dict[str, object]:
    from django.conf import settings

    return dict(settings.SAGAS)


def test_secrets_in_error_messages_and_tracebacks_are_masked_wherever_they_are_stored(worker: WorkerProcess) -> None:
    run = wait_for_run(LeakySecrets.start(PAYLOAD), worker)
    assert run.status == RunStatus.COMPENSATED
    charge = run.steps.get(name="charge")
    hold = run.steps.get(name="hold")
    assert [f["class"] for f in charge.failures] == ["transient", "transient"]
    assert charge.error["message"] == f"gateway refused card {MASK} (session {MASK})"
    assert MASK in charge.error["traceback"]
    assert [f["kind"] for f in hold.failures] == ["compensation"]
    assert hold.failures[0]["message"] == f"undo refused for session {MASK}"

    stored = {
        "the steps": json.dumps([[s.failures, s.error] for s in run.steps.all()]),
        "the run's error": json.dumps(run.error),
        # SagaStarted holds the payload itself (stored, as run.payload is, and shown masked): the rest must not.
        "the event log": json.dumps([e.data for e in run.events.exclude(type=EventType.SAGA_STARTED)]),
    }
    results = TaskResult.objects.filter(task_id__startswith=str(run.pk))
    assert {r.status for r in results} >= {"RETRY", "FAILURE"}
    stored["the result backend"] = json.dumps([[r.result, r.traceback, r.task_args] for r in results])
    client = viewer()
    stored["the admin's run page"] = client.get(reverse("admin:sagas_sagarun_change", args=[run.pk])).content.decode()
    stored["the admin's live page"] = client.get(reverse("admin:sagas_sagarun_live", args=[run.pk])).content.decode()
    stored["the API"] = client.get(f"/api/runs/{run.pk}/").content.decode()
    for where, text in stored.items():
        assert_no_secret(text, where)
    assert "gateway refused card" in stored["the result backend"]  # the rest of the message is kept


def test_a_child_refused_by_its_schema_leaves_no_card_number_in_either_run(worker: WorkerProcess) -> None:
    """The child's payload_schema refuses the card as the parent spells it, and its message repeats the value: the
    parent's step fails with that message masked, and no row of the runs (beyond the masked keys that hold the
    card), no result of their tasks and no line of the worker's log shows it."""
    card = "4111-1111-1111-1111"
    parent = wait_for_run(CardParent.start({"card_number": card, "customer": "ada"}), worker)

    assert parent.status == RunStatus.COMPENSATED
    pay = parent.steps.get(name="pay")
    assert pay.status == StepStatus.FAILED
    assert pay.error["message"].startswith("The payload of saga 'tests.card_child' does not match its payload_schema")
    assert f"card_number: '{MASK}' does not match" in pay.error["message"]
    assert MASK in pay.error["traceback"]
    assert parent.error["message"] == pay.error["message"]
    runs = SagaRun.objects.filter(Q(pk=parent.pk) | Q(parent=parent))
    assert list(runs) == [parent]  # the child was refused before it was stored
    rows: dict[str, object] = {
        "runs": [model_to_dict(run) for run in runs],
        "steps": [model_to_dict(step) for step in SagaStepRun.objects.filter(run__in=runs)],
        "events": [model_to_dict(event) for event in SagaEvent.objects.filter(run__in=runs)],
        "snapshots": [model_to_dict(snapshot) for snapshot in SagaSnapshot.objects.filter(run__in=runs)],
        "task results": [model_to_dict(r) for r in TaskResult.objects.filter(task_id__startswith=str(parent.pk))],
    }
    for where, values in rows.items():
        # Masked as every reader masks: the payload's own card_number key holds it, and is shown masked.
        assert card not in json.dumps(masked(values), default=str), f"the card number is in the {where}"
    assert card in json.dumps(rows["events"], default=str)  # unmasked, the start payload holds it: the check can fail
    assert card not in worker.log_tail(lines=2000)
