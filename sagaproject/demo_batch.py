"""The demo's data and its batch of PlaceOrder and BookTrip runs, one per outcome the framework handles."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

import sagas
from participants.airline.models import Flight
from participants.cars.models import CarClass
from participants.checkout.sagas import PlaceOrder
from participants.hotels.models import Hotel
from participants.inventory.models import StockItem
from participants.payments.models import Account, CardStatus
from participants.shipping.models import DeliveryZone
from participants.travel.sagas import BookTrip
from sagas.models import SagaRun
from sagas.states import FINISHED_RUN_STATES, RunStatus, StepStatus

DEMO_DATABASE = Path(__file__).resolve().parent.parent / "db.sqlite3"  # the settings' default database
ADMIN_USERNAME = "admin"
ADMIN_PASSWORD = "sagas-demo"
# A run in one of these stays there until a person acts: what the demo waits for.

DELIVERABLE = {"country": "NL", "city": "Amsterdam", "line1": "Damrak 1", "postal_code": "1012 LG"}
# ZZ is an ISO 3166 code reserved for private use, so no real delivery zone is ever called that.
UNSERVICEABLE = {"country": "ZZ", "city": "Nowhere", "line1": "1 Road", "postal_code": "0000"}
# SKU -> (name, units available at the start of every batch); the lamp is sold out on purpose.
STOCK = {
    "DEMO-MUG": ("Demo mug", 100),
    "DEMO-TEE": ("Demo T-shirt", 100),
    "DEMO-LAMP": ("Demo lamp (sold out)", 0),
}
PRICES = {"DEMO-MUG": "9.50", "DEMO-TEE": "20.00", "DEMO-LAMP": "45.00"}
# Accounts are topped up to this before every batch, so earlier demos never make a charge fail.
MIN_BALANCE = Decimal("5000.00")
# The travel suppliers answer after this long, so the admin shows flight, hotel and car booked in parallel.
SUPPLIER_MS = 300


@dataclass(frozen=True)
class Shop:
    """Ids of the demo accounts (stock and zones are found by SKU and country)."""

    ok_account: int
    declined_account: int
    gateway_down_account: int
    flight: str = ""  # flight number
    hotel: int = 0
    cars: int = 0  # a car class with cars to rent
    no_cars: int = 0  # a car class with none left


@dataclass(frozen=True)
class Scenario:
    slug: str
    title: str
    expected: str
    payload: dict[str, Any]
    saga: type[sagas.Saga] = PlaceOrder


@dataclass
class DemoRun:
    scenario: Scenario
    run_id: str
    started: float = field(default_factory=time.monotonic)
    status: str = RunStatus.PENDING
    settled_after: float | None = None
    failure: str = ""

    @property
    def as_expected(self) -> bool:
        return self.status == self.scenario.expected


class ForeignDatabase(Exception):
    """The demo was pointed at a database that is not its own, where it must not reset anyone's password."""


def is_demo_database() -> bool:
    """Whether the default database is the demo's own: the SQLite file db.sqlite3 in the project directory."""
    db = settings.DATABASES["default"]
    return str(db["ENGINE"]).endswith("sqlite3") and Path(str(db["NAME"])).resolve() == DEMO_DATABASE.resolve()


def ensure_admin() -> None:
    """Create the demo superuser, or, in the demo's own database only, give an existing ``admin`` the demo
    password and full rights again (anywhere else that would hand a known password to someone's real admin)."""
    user_model = get_user_model()
    user = user_model.objects.filter(username=ADMIN_USERNAME).first()
    if user is None:
        user_model.objects.create_superuser(ADMIN_USERNAME, "admin@example.com", ADMIN_PASSWORD)
        return
    if not is_demo_database():
        name = settings.DATABASES["default"]["NAME"]
        raise ForeignDatabase(
            f"User {ADMIN_USERNAME!r} already exists in database {name!r}, which is not the demo's own "
            f"({DEMO_DATABASE}); the demo does not reset its password there. Unset DATABASE_URL to run the demo "
            "on its own database."
        )
    user.set_password(ADMIN_PASSWORD)
    user.is_active = user.is_staff = user.is_superuser = True
    user.save()


@transaction.atomic
def seed() -> Shop:
    """Stock, accounts and delivery zones every scenario relies on; safe to repeat on the same database."""
    for sku, (name, available) in STOCK.items():
        # Restocking only touches `available`: `reserved` belongs to the reservations of earlier runs.
        StockItem.objects.update_or_create(sku=sku, defaults={"name": name, "available": available})
    DeliveryZone.objects.update_or_create(country="NL", defaults={"active": True})
    # Someone may have added ZZ in the admin; the unserviceable scenarios need it not to deliver.
    DeliveryZone.objects.filter(country=UNSERVICEABLE["country"]).update(active=False)
    flight, _ = Flight.objects.update_or_create(
        number="DEMO1", defaults={"departs_on": date.today() + timedelta(days=30), "seats_total": 10_000}
    )
    Flight.objects.filter(pk=flight.pk).update(response_ms=SUPPLIER_MS)
    hotel, _ = Hotel.objects.get_or_create(name="Demo hotel", city="Lisbon", defaults={"rooms_total": 10_000})
    cars, _ = CarClass.objects.get_or_create(name="Demo compact", city="Lisbon", defaults={"cars_total": 10_000})
    no_cars, _ = CarClass.objects.get_or_create(name="Demo convertible (none left)", city="Lisbon")
    Hotel.objects.filter(pk=hotel.pk).update(response_ms=SUPPLIER_MS)
    CarClass.objects.filter(pk__in=[cars.pk, no_cars.pk]).update(response_ms=SUPPLIER_MS)
    CarClass.objects.filter(pk=no_cars.pk, cars_rented=0).update(cars_total=0)
    return Shop(
        ok_account=_account("demo-ok@example.com", "Ada (demo, card OK)"),
        declined_account=_account("demo-declined@example.com", "Bob (demo, card declined)", declined=True),
        gateway_down_account=_account(
            "demo-gateway-down@example.com", "Cy (demo, refund gateway down)", refund_gateway_down=True
        ),
        flight=flight.number,
        hotel=hotel.pk,
        cars=cars.pk,
        no_cars=no_cars.pk,
    )


def _account(email: str, holder: str, *, declined: bool = False, refund_gateway_down: bool = False) -> int:
    account = Account.objects.filter(email=email).order_by("pk").first() or Account(email=email)
    account.holder = holder
    account.card_status = CardStatus.DECLINED if declined else CardStatus.OK
    account.refund_gateway_down = refund_gateway_down
    account.balance = max(Decimal(account.balance), MIN_BALANCE)
    account.save()
    return account.pk


def scenarios(shop: Shop) -> list[Scenario]:
    """The batch: each scenario's payload and the status its run must end in."""

    def order(account: int, lines: dict[str, int], address: dict[str, str]) -> dict[str, Any]:
        return {
            "customer_email": "customer@example.com",
            "account_id": account,
            "lines": [{"sku": sku, "quantity": qty, "unit_price": PRICES[sku]} for sku, qty in lines.items()],
            "shipping_address": dict(address),
        }

    def trip(account: int, car_class: int) -> dict[str, Any]:
        return {
            "traveller_email": "traveller@example.com",
            "account_id": account,
            "flight_number": shop.flight,
            "hotel_id": shop.hotel,
            "nights": 3,
            "car_class_id": car_class,
            "amount": "1250.00",
        }

    ok, declined, gateway_down = shop.ok_account, shop.declined_account, shop.gateway_down_account
    return [
        Scenario(
            "mugs-and-tee",
            "ships: 2 mugs + 1 tee",
            RunStatus.COMPLETED,
            order(ok, {"DEMO-MUG": 2, "DEMO-TEE": 1}, DELIVERABLE),
        ),
        Scenario("tees", "ships: 3 tees", RunStatus.COMPLETED, order(ok, {"DEMO-TEE": 3}, DELIVERABLE)),
        Scenario("mug", "ships: 1 mug", RunStatus.COMPLETED, order(ok, {"DEMO-MUG": 1}, DELIVERABLE)),
        Scenario(
            "out-of-stock",
            "lamp out of stock",
            RunStatus.COMPENSATED,
            order(ok, {"DEMO-MUG": 1, "DEMO-LAMP": 1}, DELIVERABLE),
        ),
        Scenario(
            "card-declined", "card declined", RunStatus.COMPENSATED, order(declined, {"DEMO-TEE": 1}, DELIVERABLE)
        ),
        Scenario(
            "unserviceable", "no delivery to ZZ", RunStatus.COMPENSATED, order(ok, {"DEMO-MUG": 1}, UNSERVICEABLE)
        ),
        # Shipping refuses, then the refund keeps failing: the run waits for a person.
        Scenario(
            "refund-stuck",
            "ZZ + refund gateway down",
            RunStatus.FAILED,
            order(gateway_down, {"DEMO-TEE": 1}, UNSERVICEABLE),
        ),
        # BookTrip: flight, hotel and car in parallel after the fraud check; payment once all three hold.
        Scenario("trip", "trip: flight + hotel + car", RunStatus.COMPLETED, trip(ok, shop.cars), BookTrip),
        # The car branch fails: the flight is released first (priority 2), then the hotel.
        Scenario("trip-no-car", "trip: no car left", RunStatus.COMPENSATED, trip(ok, shop.no_cars), BookTrip),
        # The card is declined after all three are booked: hotel and car are undone together.
        Scenario("trip-declined", "trip: card declined", RunStatus.COMPENSATED, trip(declined, shop.cars), BookTrip),
    ]


def start_batch(shop: Shop, tag: str) -> list[DemoRun]:
    """Start one run per scenario; ``tag`` makes the idempotency keys unique to this demo."""
    return [
        DemoRun(
            scenario, str(scenario.saga.start(scenario.payload, idempotency_key=f"demo-{tag}-{scenario.slug}").pk)
        )
        for scenario in scenarios(shop)
    ]


def wait_settled(
    runs: list[DemoRun],
    *,
    timeout: float,
    on_poll: Callable[[], None],
    on_settled: Callable[[DemoRun], None],
) -> bool:
    """Poll the database until every run is settled or ``timeout`` passes; True if all settled.

    ``on_poll`` runs on every round (the caller checks its processes are alive); ``on_settled`` once per run.
    """
    deadline = time.monotonic() + timeout
    pending = {run.run_id: run for run in runs}
    while True:
        for run_id, status in SagaRun.objects.filter(pk__in=list(pending)).values_list("pk", "status"):
            run = pending[str(run_id)]
            run.status = status
            if status in FINISHED_RUN_STATES:
                run.settled_after = time.monotonic() - run.started
                run.failure = describe_failure(run.run_id)
                del pending[run.run_id]
                on_settled(run)
        if not pending:
            return True
        if time.monotonic() > deadline:
            for run in pending.values():
                run.failure = describe_failure(run.run_id)
            return False
        on_poll()
        time.sleep(0.25)


def describe_failure(run_id: str) -> str:
    """``step: code`` of the failure that made the run compensate, plus any compensation that gave up."""
    run = SagaRun.objects.get(pk=run_id)
    parts = []
    if run.error:
        parts.append(f"{run.error.get('step', '?')}: {run.error.get('code') or run.error.get('class', '?')}")
    for step in run.steps.filter(status=StepStatus.COMPENSATION_FAILED).order_by("index"):
        error = step.error or {}
        parts.append(f"{step.name} compensation gave up: {error.get('code') or error.get('class', '?')}")
    running = run.steps.filter(status__in=[StepStatus.RUNNING, StepStatus.COMPENSATING]).first()
    if running is not None and run.status not in FINISHED_RUN_STATES:
        parts.append(f"still {running.status}: {running.name}")
    return "; ".join(parts) or "-"


def summary(
    runs: list[DemoRun], shop: Shop, *, web_url: str, flower_url: str, shell_env: str, python: str
) -> list[str]:
    """The summary the demo prints: the table, the URLs, and what a person can do about a failed run.

    ``shell_env`` and ``python`` complete the shell commands shown, so they reach the demo's worker.
    """
    lines = ["", *summary_table(runs, web_url), ""]
    lines.append(f"admin:        {web_url}/admin/   (user {ADMIN_USERNAME!r}, password {ADMIN_PASSWORD!r})")
    lines.append(f"failed runs:  {web_url}/admin/sagas/sagarun/?status__exact=failed")
    lines.append(f"Flower:       {flower_url}")
    account = f"{web_url}/admin/payments/account/{shop.gateway_down_account}/change/"
    for run in runs:
        if run.status != RunStatus.FAILED:
            continue
        lines += [
            "",
            f"Run {run.run_id} ({run.scenario.title}) awaits a person: its refund could not get through.",
            f"  1. Clear 'refund gateway down' on account {shop.gateway_down_account}: {account}",
            "  2. Then re-run the failed compensation; the demo worker picks it up while the demo serves:",
            f'     {shell_env} {python} manage.py shell -c "import sagas; '
            f"sagas.retry('{run.run_id}', reason='refund gateway is back', actor='admin')\"",
            "     or, if the money went back some other way, record that a person fixed it:",
            f"     {python} manage.py shell -c \"import sagas; sagas.resolve('{run.run_id}', "
            "step='charge_payment', reason='refunded by hand', actor='admin')\"",
        ]
    return lines


def summary_table(runs: list[DemoRun], web_url: str) -> list[str]:
    """The runs as an aligned text table, one line per run under a header."""
    header = ("scenario", "run id", "expected", "actual", "", "failed step / error code", "admin")
    rows = [
        (
            run.scenario.title,
            run.run_id,
            run.scenario.expected,
            run.status,
            "ok" if run.as_expected else "WRONG",
            run.failure,
            run_admin_url(web_url, run.run_id),
        )
        for run in runs
    ]
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return lines


def run_admin_url(web_url: str, run_id: str) -> str:
    return f"{web_url}/admin/sagas/sagarun/{run_id}/change/"
