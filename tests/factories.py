"""factory_boy factories for the participant services' models."""

from __future__ import annotations

from decimal import Decimal

import factory
from factory.django import DjangoModelFactory

from participants.checkout.sagas import PlaceOrder
from participants.inventory.models import Reservation, ReservationLine, ReservationStatus, StockItem
from participants.notifications.models import Notification, NotificationStatus, Suppression
from participants.orders.models import Order, OrderLine, OrderStatus
from participants.payments.models import Account, CardStatus, Payment, PaymentStatus, Refund
from participants.shipping.models import DeliveryZone, Shipment, ShipmentStatus
from sagas.models import SagaDefinition, SagaRun, SagaStepRun
from sagas.states import RunStatus, StepStatus

ADDRESS = {"country": "NL", "city": "Amsterdam", "line1": "Damrak 1", "postal_code": "1012 LG"}


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
    correlation_id = factory.Sequence(lambda n: f"corr-{n}")
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
