"""factory_boy factories for the participant services' models."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import factory
from django.db import models
from django.utils import timezone
from factory.django import DjangoModelFactory

from participants.airline.models import Flight, HoldStatus, SeatHold
from participants.analytics.models import CountedMessage, Outcome, SagaOutcomeCount
from participants.cars.models import CarClass, CarRental, RentalStatus
from participants.checkout.sagas import PlaceOrder
from participants.fraud.models import BlockedTraveller, Screening, Verdict
from participants.hotels.models import BookingStatus, Hotel, RoomBooking
from participants.inventory.models import Reservation, ReservationLine, ReservationStatus, StockItem
from participants.loyalty.models import LoyaltyAccount, PointsEntry
from participants.notifications.models import Notification, NotificationStatus, Suppression
from participants.orders.models import Order, OrderLine, OrderStatus
from participants.payments.models import Account, CardStatus, Payment, PaymentStatus, Refund
from participants.shipping.models import DeliveryZone, Shipment, ShipmentStatus
from sagas.models import SagaDefinition, SagaRun, SagaStepRun
from sagas.states import RunStatus, StepStatus
from tests.testapp.sagas import Approval, Pivoted

# The step statuses of a PlaceOrder run whose payment refund gave up: failed, waiting for a person.
COMPENSATION_FAILED = {
    "create_order": StepStatus.COMPENSATED,
    "reserve_stock": StepStatus.COMPENSATED,
    "charge_payment": StepStatus.COMPENSATION_FAILED,
    "schedule_shipment": StepStatus.FAILED,
    "send_confirmation": StepStatus.SKIPPED,
}

ADDRESS = {"country": "NL", "city": "Amsterdam", "line1": "Damrak 1", "postal_code": "1012 LG"}


def order_payload(account_id: int = 1, **overrides: Any) -> dict[str, Any]:
    """What a shop sends to start PlaceOrder: two lines (mug, tee), delivered to ADDRESS."""
    payload = {
        "customer_email": "ada@example.com",
        "account_id": account_id,
        "lines": [
            {"sku": "mug", "quantity": 2, "unit_price": "9.50"},
            {"sku": "tee", "quantity": 1, "unit_price": "20.00"},
        ],
        "shipping_address": dict(ADDRESS),
    }
    payload.update(overrides)
    return payload


class OrderFactory(DjangoModelFactory[Order]):
    class Meta:
        model = Order

    customer_email = factory.Sequence(lambda n: f"customer{n}@example.com")
    shipping_address = factory.LazyFunction(lambda: dict(ADDRESS))
    total = Decimal("20.00")
    currency = "EUR"
    status = OrderStatus.PLACED
    idempotency_key = factory.Sequence(lambda n: f"order-{n}")


class OrderLineFactory(DjangoModelFactory[OrderLine]):
    class Meta:
        model = OrderLine

    order = factory.SubFactory(OrderFactory)
    sku = factory.Sequence(lambda n: f"sku-{n}")
    quantity = 2
    unit_price = Decimal("10.00")


class StockItemFactory(DjangoModelFactory[StockItem]):
    class Meta:
        model = StockItem
        django_get_or_create = ("sku",)

    sku = factory.Sequence(lambda n: f"sku-{n}")
    name = factory.LazyAttribute(lambda item: f"Product {item.sku}")
    available = 100
    reserved = 0


class ReservationFactory(DjangoModelFactory[Reservation]):
    class Meta:
        model = Reservation

    idempotency_key = factory.Sequence(lambda n: f"reservation-{n}")
    status = ReservationStatus.RESERVED


class ReservationLineFactory(DjangoModelFactory[ReservationLine]):
    class Meta:
        model = ReservationLine

    reservation = factory.SubFactory(ReservationFactory)
    item = factory.SubFactory(StockItemFactory)
    quantity = 1


class AccountFactory(DjangoModelFactory[Account]):
    class Meta:
        model = Account

    holder = factory.Sequence(lambda n: f"Holder {n}")
    email = factory.Sequence(lambda n: f"holder{n}@example.com")
    balance = Decimal("1000.00")
    card_status = CardStatus.OK
    refund_gateway_down = False


class PaymentFactory(DjangoModelFactory[Payment]):
    class Meta:
        model = Payment

    account = factory.SubFactory(AccountFactory)
    amount = Decimal("25.00")
    status = PaymentStatus.CAPTURED
    idempotency_key = factory.Sequence(lambda n: f"payment-{n}")


class RefundFactory(DjangoModelFactory[Refund]):
    class Meta:
        model = Refund

    payment = factory.SubFactory(PaymentFactory, status=PaymentStatus.REFUNDED)
    amount = factory.SelfAttribute("payment.amount")
    idempotency_key = factory.Sequence(lambda n: f"refund-{n}")


class DeliveryZoneFactory(DjangoModelFactory[DeliveryZone]):
    class Meta:
        model = DeliveryZone
        django_get_or_create = ("country",)

    country = "NL"
    active = True


class ShipmentFactory(DjangoModelFactory[Shipment]):
    class Meta:
        model = Shipment

    order_id = factory.Sequence(lambda n: n + 1)
    address = factory.LazyFunction(lambda: dict(ADDRESS))
    status = ShipmentStatus.SCHEDULED
    idempotency_key = factory.Sequence(lambda n: f"shipment-{n}")


class SuppressionFactory(DjangoModelFactory[Suppression]):
    class Meta:
        model = Suppression

    email = factory.Sequence(lambda n: f"suppressed{n}@example.com")
    reason = "bounced"


class NotificationFactory(DjangoModelFactory[Notification]):
    class Meta:
        model = Notification

    recipient = factory.Sequence(lambda n: f"recipient{n}@example.com")
    subject = "Your order"
    body = "Thank you for your order."
    status = NotificationStatus.SENT
    idempotency_key = factory.Sequence(lambda n: f"notification-{n}")


# --- the saga framework's own rows, for tests that need a run in a given state ---


class SagaDefinitionFactory(DjangoModelFactory[SagaDefinition]):
    class Meta:
        model = SagaDefinition
        django_get_or_create = ("name", "version")

    name = PlaceOrder.name
    version = PlaceOrder.version
    spec = factory.LazyFunction(PlaceOrder.spec)
    spec_hash = factory.LazyFunction(PlaceOrder.spec_hash)


class SagaRunFactory(DjangoModelFactory[SagaRun]):
    """A PlaceOrder run in ``status`` whose steps have ``step_statuses`` (name -> status; others pending)."""

    class Meta:
        model = SagaRun
        skip_postgeneration_save = True

    definition = factory.SubFactory(SagaDefinitionFactory)
    saga_name = factory.SelfAttribute("definition.name")
    version = factory.SelfAttribute("definition.version")
    status = RunStatus.PENDING
    payload = factory.LazyFunction(dict)
    # Planted state, not started by the framework: it has no event log to rebuild it from.
    correlation_id = factory.Sequence(lambda n: f"factory-{n}")
    lock_version = 0

    @factory.post_generation
    def step_statuses(run: SagaRun, create: bool, extracted: dict[str, str] | None, **kwargs: object) -> None:
        if not create:
            return
        statuses = extracted or {}
        for index, step in enumerate(PlaceOrder.steps):
            SagaStepRun.objects.create(
                run=run, name=step.name, index=index, status=statuses.get(step.name, StepStatus.PENDING)
            )


# --- the travel booking services ---


class BlockedTravellerFactory(DjangoModelFactory[BlockedTraveller]):
    class Meta:
        model = BlockedTraveller

    email = factory.Sequence(lambda n: f"blocked{n}@example.com")
    reason = "chargebacks"


class ScreeningFactory(DjangoModelFactory[Screening]):
    class Meta:
        model = Screening

    traveller_email = factory.Sequence(lambda n: f"traveller{n}@example.com")
    amount = Decimal("500.00")
    verdict = Verdict.APPROVED
    idempotency_key = factory.Sequence(lambda n: f"screening-{n}")


class FlightFactory(DjangoModelFactory[Flight]):
    class Meta:
        model = Flight
        django_get_or_create = ("number",)

    number = factory.Sequence(lambda n: f"KL{1000 + n}")
    departs_on = factory.LazyFunction(lambda: timezone.localdate() + timedelta(days=30))
    seats_total = 100
    seats_held = 0
    response_ms = 0


class SeatHoldFactory(DjangoModelFactory[SeatHold]):
    class Meta:
        model = SeatHold

    flight = factory.SubFactory(FlightFactory)
    traveller_email = factory.Sequence(lambda n: f"traveller{n}@example.com")
    status = HoldStatus.HELD
    idempotency_key = factory.Sequence(lambda n: f"seat-hold-{n}")
    started_at = factory.LazyFunction(timezone.now)
    finished_at = factory.LazyFunction(timezone.now)


class HotelFactory(DjangoModelFactory[Hotel]):
    class Meta:
        model = Hotel

    name = factory.Sequence(lambda n: f"Hotel {n}")
    city = "Lisbon"
    rooms_total = 20
    rooms_booked = 0
    response_ms = 0


class RoomBookingFactory(DjangoModelFactory[RoomBooking]):
    class Meta:
        model = RoomBooking

    hotel = factory.SubFactory(HotelFactory)
    traveller_email = factory.Sequence(lambda n: f"traveller{n}@example.com")
    nights = 3
    status = BookingStatus.BOOKED
    idempotency_key = factory.Sequence(lambda n: f"room-booking-{n}")
    started_at = factory.LazyFunction(timezone.now)
    finished_at = factory.LazyFunction(timezone.now)


class CarClassFactory(DjangoModelFactory[CarClass]):
    class Meta:
        model = CarClass

    name = factory.Sequence(lambda n: f"Compact {n}")
    city = "Lisbon"
    cars_total = 10
    cars_rented = 0
    response_ms = 0


class CarRentalFactory(DjangoModelFactory[CarRental]):
    class Meta:
        model = CarRental

    car_class = factory.SubFactory(CarClassFactory)
    traveller_email = factory.Sequence(lambda n: f"traveller{n}@example.com")
    days = 3
    status = RentalStatus.RENTED
    idempotency_key = factory.Sequence(lambda n: f"car-rental-{n}")
    started_at = factory.LazyFunction(timezone.now)
    finished_at = factory.LazyFunction(timezone.now)


# --- the choreography services: loyalty and analytics ---


class LoyaltyAccountFactory(DjangoModelFactory[LoyaltyAccount]):
    class Meta:
        model = LoyaltyAccount
        django_get_or_create = ("customer_email",)

    customer_email = factory.Sequence(lambda n: f"member{n}@example.com")
    points = 0
    service_down = False


class PointsEntryFactory(DjangoModelFactory[PointsEntry]):
    """An entry whose points are already on its account (the factory adds them, as an award would)."""

    class Meta:
        model = PointsEntry

    account = factory.SubFactory(LoyaltyAccountFactory)
    points = 20
    reason = factory.Sequence(lambda n: f"order {n + 1}")
    idempotency_key = factory.Sequence(lambda n: f"points-{n}")

    @classmethod
    def _create(cls, model_class: type[PointsEntry], *args: object, **kwargs: object) -> PointsEntry:
        entry = super()._create(model_class, *args, **kwargs)
        LoyaltyAccount.objects.filter(pk=entry.account_id).update(points=models.F("points") + entry.points)
        return entry


class SagaOutcomeCountFactory(DjangoModelFactory[SagaOutcomeCount]):
    class Meta:
        model = SagaOutcomeCount
        django_get_or_create = ("saga_name", "outcome", "day")

    saga_name = PlaceOrder.name
    outcome = Outcome.COMPLETED
    day = factory.LazyFunction(lambda: timezone.now().date())
    count = 1


class CountedMessageFactory(DjangoModelFactory[CountedMessage]):
    class Meta:
        model = CountedMessage

    idempotency_key = factory.Sequence(lambda n: f"message-{n}")
    outcome_count = factory.SubFactory(SagaOutcomeCountFactory)


def forward_failed_run(**fields: Any) -> SagaRun:
    """A ``tests.pivoted`` run planted ``failed`` after its pivot: reserve and charge (the pivot) succeeded, ship
    failed for good, notify pending."""
    definition = SagaDefinitionFactory(
        name=Pivoted.name, version=Pivoted.version, spec=Pivoted.spec(), spec_hash=Pivoted.spec_hash()
    )
    run = SagaRunFactory(definition=definition, step_statuses={}, **{"status": RunStatus.FAILED, **fields})
    run.steps.all().delete()  # the factory's steps are PlaceOrder's
    statuses = {"reserve": StepStatus.SUCCEEDED, "charge": StepStatus.SUCCEEDED, "ship": StepStatus.FAILED}
    for index, step in enumerate(Pivoted.steps):
        SagaStepRun.objects.create(
            run=run,
            name=step.name,
            index=index,
            status=statuses.get(step.name, StepStatus.PENDING),
            attempts=2 if step.name == "ship" else (1 if step.name in statuses else 0),
            output={"recorded": step.name} if step.name in ("reserve", "charge") else None,
        )
    return run


def waiting_run(**fields: Any) -> SagaRun:
    """A ``tests.approval`` run planted ``executing`` while its Wait step ``approved`` waits (reserve done)."""
    definition = SagaDefinitionFactory(
        name=Approval.name, version=Approval.version, spec=Approval.spec(), spec_hash=Approval.spec_hash()
    )
    run = SagaRunFactory(definition=definition, step_statuses={}, **{"status": RunStatus.EXECUTING, **fields})
    run.steps.all().delete()  # the factory's steps are PlaceOrder's
    statuses = {"reserve": StepStatus.SUCCEEDED, "approved": StepStatus.WAITING}
    for index, step in enumerate(Approval.steps):
        SagaStepRun.objects.create(
            run=run, name=step.name, index=index, status=statuses.get(step.name, StepStatus.PENDING)
        )
    return run
