"""sagas.testing.run_saga on the plugin's real worker: every participant saga run to its end, and each kind of
planned failure doing what it says."""

from __future__ import annotations

from decimal import Decimal

import pytest

from participants.checkout.sagas import PlaceOrder
from participants.travel.sagas import BookTrip
from sagas.states import RunStatus, StepStatus
from sagas.testing import run_saga
from tests.factories import AccountFactory, CarClassFactory, FlightFactory, HotelFactory
from tests.integration.conftest import Shop, ledger

PLACE_ORDER_STEPS = [step.name for step in PlaceOrder.steps]


def trip_payload() -> dict:
    account = AccountFactory(balance=Decimal("2000.00"))
    flight, hotel, car = FlightFactory(), HotelFactory(), CarClassFactory()
    return {
        "traveller_email": "ada@example.com",
        "account_id": account.pk,
        "flight_number": flight.number,
        "hotel_id": hotel.pk,
        "nights": 2,
        "car_class_id": car.pk,
        "amount": "800.00",
    }


def test_place_order_runs_to_completion(saga_worker) -> None:
    outcome = run_saga(PlaceOrder, Shop().payload())
    assert outcome.status == RunStatus.COMPLETED
    assert [(s.name, s.status, s.attempts) for s in outcome.steps] == [
        (name, StepStatus.SUCCEEDED, 1) for name in PLACE_ORDER_STEPS
    ]
    assert outcome.event_types()[0] == ("SagaStarted", "")
    assert outcome.event_types()[-1] == ("SagaCompleted", "")


def test_a_planned_business_failure_compensates_the_steps_before_it(saga_worker) -> None:
    shop = Shop()
    before = ledger()
    outcome = run_saga(PlaceOrder, shop.payload(), fail={"charge_payment": "business"})
    assert outcome.status == RunStatus.COMPENSATED
    charge = outcome.step("charge_payment")
    # A business refusal is the "invalid_request" class: the same request would fail again, so no retry.
    assert (charge.status, charge.attempts, charge.error["class"]) == (StepStatus.FAILED, 1, "invalid_request")
    assert "planned business failure" in charge.error["message"]
    assert {outcome.step(n).status for n in ("create_order", "reserve_stock")} == {StepStatus.COMPENSATED}
    assert ledger()["stock"] == before["stock"]  # the reservation was released for real


def test_planned_transient_failures_are_retried_until_the_action_runs(saga_worker) -> None:
    outcome = run_saga(PlaceOrder, Shop().payload(), fail={"reserve_stock": "transient:2"})
    assert outcome.status == RunStatus.COMPLETED
    reserve = outcome.step("reserve_stock")
    assert (reserve.status, reserve.attempts) == (StepStatus.SUCCEEDED, 3)
    assert [f["class"] for f in reserve.failures] == ["transient", "transient"]
    assert outcome.event_types().count(("StepAttemptFailed", "reserve_stock")) == 2


def test_a_planned_timeout_uses_up_the_attempts_then_compensates(saga_worker) -> None:
    outcome = run_saga(PlaceOrder, Shop().payload(), fail={"charge_payment": "timeout"})
    assert outcome.status == RunStatus.COMPENSATED
    charge = outcome.step("charge_payment")
    attempts = PlaceOrder.step("charge_payment").retry.max_attempts
    assert (charge.status, charge.attempts) == (StepStatus.FAILED, attempts)
    assert {f["class"] for f in charge.failures} == {"timeout"}


def test_book_trip_runs_to_completion_and_a_failed_branch_is_undone(saga_worker) -> None:
    assert run_saga(BookTrip, trip_payload()).status == RunStatus.COMPLETED
    outcome = run_saga(BookTrip, trip_payload(), fail={"rent_car": "business"})
    assert outcome.status == RunStatus.COMPENSATED
    assert outcome.step("rent_car").status == StepStatus.FAILED
    assert outcome.step("check_fraud").status == StepStatus.SUCCEEDED  # read-only: nothing to undo


@pytest.mark.parametrize(
    ("fail", "message"),
    [
        ({"pay": "business"}, "'pay', which is not a step of 'orders.place_order'"),
        ({"charge_payment": "transient"}, "must be 'business', 'transient:N'"),
        ({"charge_payment": "transient:0"}, "must be 'business', 'transient:N'"),
    ],
)
def test_a_plan_that_names_no_step_or_no_known_failure_is_refused(fail: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        run_saga(PlaceOrder, {}, fail=fail)
