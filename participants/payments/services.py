"""Writes of the payments service: charge an account and refund a payment, both idempotent on their key."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django.db import IntegrityError, transaction

from participants.payments.errors import (
    AccountNotFound,
    CardDeclined,
    InsufficientFunds,
    InvalidAmount,
    PaymentNotFound,
    RefundGatewayUnavailable,
)
from participants.payments.models import Account, CardStatus, Payment, PaymentStatus, Refund

CENT = Decimal("0.01")
# DecimalField(max_digits=12, decimal_places=2) holds at most ten integer digits.
MAX_AMOUNT = Decimal("9999999999.99")


def payment_charge(*, account_id: int, amount: Decimal | str, idempotency_key: str) -> Payment:
    """Take ``amount`` from the account's balance and record it as a captured payment.

    A repeat with the same ``idempotency_key`` returns the first call's payment and charges nothing.
    Raises ``InvalidAmount``, ``AccountNotFound``, ``CardDeclined`` or ``InsufficientFunds``,
    having charged nothing.
    """
    value = _to_amount(amount)
    with transaction.atomic():
        account = Account.objects.select_for_update().filter(pk=account_id).first()
        # Looked up after the lock: a concurrent call with this key that held it has committed by
        # now, so a repeat never fails with insufficient_funds because of its own first charge.
        existing = Payment.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing
        if account is None:
            raise AccountNotFound(f"Account {account_id} does not exist, so it cannot be charged.")
        if account.card_status == CardStatus.DECLINED:
            raise CardDeclined(f"The card of account {account.pk} ({account.holder}) was declined.")
        if account.balance < value:
            raise InsufficientFunds(
                f"Account {account.pk} ({account.holder}) has a balance of {account.balance}, "
                f"less than the {value} to charge."
            )

        try:
            # A savepoint, so losing a race on the key leaves the outer transaction usable.
            with transaction.atomic():
                payment = Payment.objects.create(account=account, amount=value, idempotency_key=idempotency_key)
        except IntegrityError:
            existing = Payment.objects.filter(idempotency_key=idempotency_key).first()
            if existing is None:
                raise
            return existing
        account.balance -= value
        account.save(update_fields=["balance"])
        return payment


def payment_refund(*, payment_id: int, idempotency_key: str) -> Refund:
    """Give a payment's whole amount back to its account, once.

    Refunding an already refunded payment returns its refund. Raises ``PaymentNotFound``, or the
    transient ``RefundGatewayUnavailable`` while the account's refund gateway is down.
    """
    with transaction.atomic():
        payment = Payment.objects.select_for_update().filter(pk=payment_id).first()
        if payment is None:
            raise PaymentNotFound(f"Payment {payment_id} does not exist, so it cannot be refunded.")
        existing = Refund.objects.filter(payment=payment).first()
        if existing is not None:
            return existing

        account = Account.objects.select_for_update().get(pk=payment.account_id)
        if account.refund_gateway_down:
            raise RefundGatewayUnavailable(
                f"The refund gateway of account {account.pk} ({account.holder}) is down, so payment "
                f"{payment.pk} ({payment.amount}) was not refunded. Retry later; an operator can clear "
                f"'refund gateway down' on the account."
            )

        refund = Refund.objects.create(payment=payment, amount=payment.amount, idempotency_key=idempotency_key)
        payment.status = PaymentStatus.REFUNDED
        payment.save(update_fields=["status"])
        account.balance += payment.amount
        account.save(update_fields=["balance"])
        return refund


def _to_amount(amount: Decimal | str) -> Decimal:
    try:
        value = Decimal(str(amount))
    except InvalidOperation:
        raise InvalidAmount(f"The amount {amount!r} is not a number.") from None
    if not value.is_finite() or value <= 0:
        raise InvalidAmount(f"The amount {amount!r} must be a number greater than zero.")
    if value != value.quantize(CENT) or value > MAX_AMOUNT:
        raise InvalidAmount(f"The amount {value} needs at most two decimal places and at most {MAX_AMOUNT}.")
    return value.quantize(CENT)
