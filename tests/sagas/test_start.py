"""Starting a run: what is stored, what is dispatched, and the bad input that writes nothing."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

import sagas
from participants.checkout.sagas import PlaceOrder
from sagas.models import SagaDefinition, SagaEvent, SagaRun, SagaStepRun
from sagas.states import EventType, RunStatus, StepStatus
from tests.factories import SagaDefinitionFactory
from tests.metrics import publishes

pytestmark = pytest.mark.django_db


def row_counts() -> dict[str, int]:
    return {model.__name__: model.objects.count() for model in (SagaRun, SagaStepRun, SagaEvent, SagaDefinition)}


def test_start_stores_a_pending_run_with_its_steps_and_dispatches_on_commit(
    django_capture_on_commit_callbacks,
) -> None:
    with django_capture_on_commit_callbacks() as callbacks:
        run = PlaceOrder.start({"order": 1}, idempotency_key="k-1", correlation_id="req-9")

    run.refresh_from_db()
    assert (run.status, run.saga_name, run.version, run.payload) == (
        RunStatus.PENDING,
        "orders.place_order",
        2,
        {"order": 1},
    )
    assert run.correlation_id == "req-9"
    assert run.deadline == run.created_at + timedelta(seconds=PlaceOrder.timeout)
    assert list(run.steps.order_by("index").values_list("name", "status")) == [
        (step.name, StepStatus.PENDING) for step in PlaceOrder.steps
    ]
    event = SagaEvent.objects.get(run=run)
    assert (event.seq, event.type, event.data["idempotency_key"]) == (1, EventType.SAGA_STARTED, "k-1")
    assert run.definition.spec_hash == PlaceOrder.spec_hash()
    # The chain, and the deadline check of a saga with a timeout, are published at commit, not before.
    assert len(publishes(callbacks)) == 2


def test_correlation_id_defaults_to_the_run_id(django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks():
        run = PlaceOrder.start({})
    assert run.correlation_id == str(run.pk)


def test_same_idempotency_key_returns_the_same_run_and_dispatches_nothing(django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks() as first:
        run = PlaceOrder.start({"order": 1}, idempotency_key="k-2")
    with django_capture_on_commit_callbacks() as second:
        again = PlaceOrder.start({"order": 1}, idempotency_key="k-2")
    assert again.pk == run.pk
    assert (len(publishes(first)), len(publishes(second))) == (2, 0)
    assert SagaRun.objects.count() == 1


def test_same_idempotency_key_with_another_payload_is_refused(django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks():
        PlaceOrder.start({"order": 1}, idempotency_key="k-3")
    with pytest.raises(sagas.IdempotencyConflict, match="another payload"):
        PlaceOrder.start({"order": 2}, idempotency_key="k-3")
    assert SagaRun.objects.count() == 1


def test_unknown_saga_names_the_known_ones() -> None:
    with pytest.raises(sagas.UnknownSaga, match=r"No saga named 'orders\.plcae_order'.*orders\.place_order"):
        sagas.get_saga("orders.plcae_order")


def test_get_saga_finds_autodiscovered_sagas() -> None:
    assert sagas.get_saga("orders.place_order") is PlaceOrder


def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"amount": Decimal("1.00")}, "not JSON-serialisable"),
        ({"when": object()}, "not JSON-serialisable"),
        ({"ratio": float("nan")}, "not JSON-serialisable"),
        ([1, 2], "must be a dict"),
        ("order", "must be a dict"),
        # What jsonb refuses, and what no page could show (the admin masks payloads recursively):
        ({"note": "a\x00b"}, "NUL characters"),
        ({"name": "\ud800"}, "unpaired surrogate"),
        ({"deep": nested(150)}, "deeper than 100"),
    ],
)
def test_payload_that_is_not_json_is_refused_and_writes_nothing(
    payload: object, message: str, django_capture_on_commit_callbacks
) -> None:
    before = row_counts()
    with django_capture_on_commit_callbacks() as callbacks, pytest.raises(sagas.InvalidPayload, match=message):
        PlaceOrder.start(payload)  # type: ignore[arg-type]
    assert row_counts() == before
    assert callbacks == []


@pytest.mark.parametrize("key", ["", 42, "x" * 256, "cart\x00-1"])
def test_bad_idempotency_key_is_refused_and_writes_nothing(key: object) -> None:
    before = row_counts()
    with pytest.raises(sagas.InvalidPayload, match="idempotency_key"):
        PlaceOrder.start({}, idempotency_key=key)  # type: ignore[arg-type]
    assert row_counts() == before


def test_a_correlation_id_with_nul_is_refused_and_writes_nothing() -> None:
    before = row_counts()
    with pytest.raises(sagas.InvalidPayload, match=r"correlation_id.*without NUL"):
        PlaceOrder.start({}, correlation_id="trace\x00x")
    assert row_counts() == before


def test_changed_steps_under_the_same_version_are_refused_with_bump_version() -> None:
    SagaDefinition.objects.filter(name=PlaceOrder.name).delete()
    SagaDefinitionFactory(spec={"steps": []}, spec_hash="0" * 64)
    with pytest.raises(sagas.DefinitionChanged, match="Bump `version`"):
        PlaceOrder.start({})
    assert not SagaRun.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_of_two_racing_starts_with_one_key_exactly_one_says_it_stored_the_run(run_concurrently) -> None:
    from sagas import services

    payload = {"customer_email": "ada@example.com", "account_id": 1, "lines": []}
    PlaceOrder.start({"warm": "up"})  # the definition row exists: both racers go straight to the insert

    def start() -> tuple[SagaRun, bool]:
        return services.run_start_or_existing(saga=PlaceOrder, payload=payload, idempotency_key="race-1")

    results = run_concurrently(start, start)

    assert not [r for r in results if isinstance(r, Exception)], results
    assert sorted(created for _, created in results) == [False, True]
    assert results[0][0].pk == results[1][0].pk
    assert SagaRun.objects.filter(idempotency_key="race-1").count() == 1
