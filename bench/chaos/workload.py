"""The soaks' workload: seeded participants with traps, PlaceOrder and BookTrip payloads, planned failures, ledger."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sagas
from sagas.conf import sagas_settings

STOCK = {"cup": 400, "pen": 300, "hat": 250}
# Where a run's payload plans failures of its own steps: {"<step>": "business" | "transient:<n>"}. Read by the
# soak's workers (bench.chaos.worker) before each attempt, so a plan survives a Redis that lost its data.
PLAN_KEY = "chaos_plan"
BUSINESS = "chaos_business"  # the code of a planned refusal
TRANSIENT = "chaos_transient"  # the code of a planned transient failure


@dataclass(frozen=True)
class Shop:
    """What the soak seeded, by primary key; the traps are the declined card, the account whose refunds cannot
    get through (its runs that must undo a charge end ``failed``), a flight, hotel and car class with no room
    left and a blocked traveller."""

    accounts: list[int]
    refunds_down: int
    skus: list[str]
    flights: list[str]
    hotels: list[int]
    car_classes: list[int]
    blocked: str


def seed(tag: str, scale: int = 1) -> Shop:
    """Seed the participants' tables for one soak; ``tag`` keeps its rows apart from anything else there. ``scale``
    multiplies the stock, seats, rooms and cars, so that a longer soak does not sell out early and end most of its
    runs at the same step."""
    from participants.airline.models import Flight
    from participants.cars.models import CarClass
    from participants.fraud.models import BlockedTraveller
    from participants.hotels.models import Hotel
    from participants.inventory.models import StockItem
    from participants.payments.models import Account, CardStatus
    from participants.shipping.models import DeliveryZone

    DeliveryZone.objects.get_or_create(country="NL", defaults={"active": True})
    for sku, units in STOCK.items():
        StockItem.objects.create(sku=f"{sku}-{tag}", name=sku, available=units * scale)
    accounts = [
        Account.objects.create(holder=f"chaos {n}", email=f"chaos{n}@example.com", balance=Decimal(2000))
        for n in range(20)
    ]
    accounts[0].card_status = CardStatus.DECLINED
    accounts[0].save()
    accounts[1].refund_gateway_down = True
    accounts[1].save()
    # The last of each is nearly full: most bookings on it are refused, and release what the others held.
    flights = [
        Flight.objects.create(number=f"{tag[:6]}{n}", departs_on="2027-06-01", seats_total=seats).number
        for n, seats in enumerate((400 * scale, 400 * scale, 3))
    ]
    hotels = [
        Hotel.objects.create(name=f"hotel {n}", city="Utrecht", rooms_total=rooms).pk
        for n, rooms in enumerate((400 * scale, 400 * scale, 3))
    ]
    car_classes = [
        CarClass.objects.create(name=f"class {n}", city="Utrecht", cars_total=cars).pk
        for n, cars in enumerate((400 * scale, 3))
    ]
    blocked = f"blocked-{tag}@example.com"
    BlockedTraveller.objects.create(email=blocked, reason="chaos soak")
    return Shop(
        accounts=[a.pk for a in accounts],
        refunds_down=accounts[1].pk,
        skus=[f"{s}-{tag}" for s in STOCK],
        flights=flights,
        hotels=hotels,
        car_classes=car_classes,
        blocked=blocked,
    )


class Workload:
    """The runs of a soak, drawn from ``rng``: BookTrip with probability ``trips``, else PlaceOrder; with
    probability ``planned`` a run plans failures of its own steps (``plan``)."""

    def __init__(self, shop: Shop, rng: random.Random, *, trips: float = 0.0, planned: float = 0.0) -> None:
        self.shop = shop
        self.rng = rng
        self.trips = trips
        self.planned = planned

    def next(self, number: int) -> tuple[type[sagas.Saga], dict[str, Any]]:
        from participants.checkout.sagas import PlaceOrder
        from participants.travel.sagas import BookTrip

        # No draw when there are no trips: the worker-kill soak keeps the sequence of payloads it always had.
        saga: type[sagas.Saga] = BookTrip if self.trips and self.rng.random() < self.trips else PlaceOrder
        payload = self.order(number) if saga is PlaceOrder else self.trip(number)
        if self.planned and self.rng.random() < self.planned:
            payload[PLAN_KEY] = self.plan(saga, payload)
        return saga, payload

    def order(self, number: int) -> dict[str, Any]:
        rng, shop = self.rng, self.shop
        country = "ZZ" if rng.random() < 0.08 else "NL"
        return {
            "customer_email": f"buyer{number}@example.com",
            "account_id": rng.choice(shop.accounts),
            "lines": [
                {"sku": sku, "quantity": rng.randint(1, 3), "unit_price": str(rng.choice([4, 9, 15]))}
                for sku in rng.sample(shop.skus, k=rng.randint(1, 2))
            ],
            "shipping_address": {"country": country, "city": "Utrecht", "line1": "Oudegracht 1", "postal_code": "3511"},
        }

    def trip(self, number: int) -> dict[str, Any]:
        rng, shop = self.rng, self.shop
        return {
            "traveller_email": shop.blocked if rng.random() < 0.05 else f"traveller{number}@example.com",
            "account_id": rng.choice(shop.accounts),
            "flight_number": rng.choice(shop.flights),
            "hotel_id": rng.choice(shop.hotels),
            "nights": rng.randint(1, 4),
            "car_class_id": rng.choice(shop.car_classes),
            "amount": str(rng.choice([120, 450, 980])),
        }

    def plan(self, saga: type[sagas.Saga], payload: dict[str, Any]) -> dict[str, str]:
        """Failures of the run's own steps. A refusal of the last step (the pivot: nothing irreversible has
        happened yet) compensates the run; charged to the account whose refunds cannot get through, the run then
        stops ``failed``, awaiting a person: the soak's planned permanent failure."""
        rng = self.rng
        last = saga.steps[-1]
        if rng.random() < 0.15:
            if rng.random() < 0.5:
                payload["account_id"] = self.shop.refunds_down
            return {last.name: "business"}
        steps = [step for step in saga.steps if step is not last]
        step = rng.choice(steps)
        if rng.random() < 0.2:
            return {step.name: "business"}
        budget = (step.retry or sagas_settings.default_retry).max_attempts
        return {step.name: f"transient:{rng.randint(1, max(1, budget - 1))}"}


def planned_failure(payload: Mapping[str, Any], step: str, attempt: int) -> Exception | None:
    """The failure a run's payload plans for this attempt of ``step``, if any."""
    kind = (payload.get(PLAN_KEY) or {}).get(step)
    if kind == "business":
        return sagas.StepFailed(f"chaos soak: planned refusal of step {step!r}", code=BUSINESS)
    if isinstance(kind, str) and kind.startswith("transient:") and attempt <= int(kind.split(":", 1)[1]):
        return sagas.TransientError(f"chaos soak: planned transient failure {attempt} of step {step!r}", code=TRANSIENT)
    return None


def ledger() -> dict[str, Any]:
    """What the participants hold, before the soak: stock, seats, rooms, cars and money."""
    from participants.inventory.models import StockItem
    from participants.payments.models import Account

    return {
        "stock": {item.sku: item.available + item.reserved for item in StockItem.objects.all()},
        "balances": {account.pk: account.balance for account in Account.objects.all()},
    }


def effect_problems(runs: list[Any], before: dict[str, Any]) -> list[str]:
    """Every sign of an effect applied twice (or undone twice, or undone without being done): counters that
    disagree with the rows that moved them, and more than one effect row for one run's step."""
    from participants.airline.models import Flight, HoldStatus, SeatHold
    from participants.cars.models import CarClass, CarRental, RentalStatus
    from participants.hotels.models import BookingStatus, Hotel, RoomBooking
    from participants.inventory.models import Reservation, StockItem
    from participants.orders.models import Order
    from participants.payments.models import Account, Payment, Refund
    from participants.shipping.models import Shipment

    problems = []
    for item in StockItem.objects.all():
        if item.available + item.reserved != before["stock"].get(item.sku, item.available + item.reserved):
            problems.append(f"stock of {item.sku} changed: {item.available} + {item.reserved}")
    for account in Account.objects.all():
        paid = sum(p.amount for p in Payment.objects.filter(account=account))
        refunded = sum(r.amount for r in Refund.objects.filter(payment__account=account))
        if account.balance != before["balances"][account.pk] - paid + refunded:
            problems.append(f"account {account.pk}: balance {account.balance} disagrees with its payments")
    for flight in Flight.objects.all():
        held = SeatHold.objects.filter(flight=flight, status=HoldStatus.HELD).count()
        if flight.seats_held != held:
            problems.append(f"flight {flight.number}: {flight.seats_held} seats held, {held} holds")
    for hotel in Hotel.objects.all():
        booked = RoomBooking.objects.filter(hotel=hotel, status=BookingStatus.BOOKED).count()
        if hotel.rooms_booked != booked:
            problems.append(f"hotel {hotel.pk}: {hotel.rooms_booked} rooms booked, {booked} bookings")
    for car_class in CarClass.objects.all():
        rented = CarRental.objects.filter(car_class=car_class, status=RentalStatus.RENTED).count()
        if car_class.cars_rented != rented:
            problems.append(f"car class {car_class.pk}: {car_class.cars_rented} cars rented, {rented} rentals")
    for run in runs:
        key = str(run.pk)
        for model in (Order, Payment, Shipment, Reservation, SeatHold, RoomBooking, CarRental):
            count = model.objects.filter(idempotency_key__startswith=key).count()
            if count > 1:
                problems.append(f"run {key}: {count} {model.__name__} rows")
        if run.status == "completed" and Refund.objects.filter(payment__idempotency_key__startswith=key).exists():
            problems.append(f"run {key}: completed but refunded")
    return problems
