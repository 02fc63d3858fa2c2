"""Tests of the payments service."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
from django.db.models import QuerySet, Sum

from participants.payments.errors import (
    AccountNotFound,
    CardDeclined,
    InsufficientFunds,
    InvalidAmount,
    PaymentError,
    PaymentNotFound,
    RefundGatewayUnavailable,
)
from participants.payments.models import Account, CardStatus, Payment, PaymentStatus, Refund
from participants.payments.services import payment_charge, payment_refund
from tests.factories import AccountFactory

if TYPE_CHECKING:
    from tests.participants.conftest import RunConcurrently


def balance(account: Account) -> Decimal:
    account.refresh_from_db()
    return account.balance


def total(queryset: QuerySet[Any], field: str) -> Decimal:
    return queryset.aggregate(total=Sum(field))["total"] or Decimal("0")


def money_in_the_system() -> Decimal:
    return (
        total(Account.objects.all(), "balance")
        + total(Payment.objects.all(), "amount")
        - total(Refund.objects.all(), "amount")
    )


@pytest.mark.django_db
def test_charge_takes_amount_from_balance_and_captures_payment() -> None:
    account = AccountFactory.create(balance=Decimal("100.00"))

    payment = payment_charge(account_id=account.pk, amount=Decimal("30.50"), idempotency_key="pay-1")

    assert payment.status == PaymentStatus.CAPTURED
    assert payment.amount == Decimal("30.50")
    assert payment.account_id == account.pk
    assert balance(account) == Decimal("69.50")


@pytest.mark.django_db
def test_charge_accepts_amount_as_string() -> None:
    account = AccountFactory.create(balance=Decimal("100.00"))

    payment = payment_charge(account_id=account.pk, amount="12.3", idempotency_key="pay-1")

    payment.refresh_from_db()
    assert payment.amount == Decimal("12.30")
    assert balance(account) == Decimal("87.70")


@pytest.mark.django_db
def test_charge_of_the_whole_balance_is_allowed() -> None:
    account = AccountFactory.create(balance=Decimal("40.00"))

    payment_charge(account_id=account.pk, amount="40.00", idempotency_key="pay-1")

    assert balance(account) == Decimal("0.00")


@pytest.mark.django_db
def test_charge_with_same_key_twice_captures_once() -> None:
    account = AccountFactory.create(balance=Decimal("100.00"))

    first = payment_charge(account_id=account.pk, amount="30.00", idempotency_key="pay-1")
    second = payment_charge(account_id=account.pk, amount="30.00", idempotency_key="pay-1")

    assert second.pk == first.pk
    assert Payment.objects.count() == 1
    assert balance(account) == Decimal("70.00")


@pytest.mark.django_db
def test_charge_repeated_after_the_balance_ran_low_returns_the_first_payment() -> None:
    account = AccountFactory.create(balance=Decimal("30.00"))
    first = payment_charge(account_id=account.pk, amount="30.00", idempotency_key="pay-1")
    Account.objects.filter(pk=account.pk).update(card_status=CardStatus.DECLINED)

    second = payment_charge(account_id=account.pk, amount="30.00", idempotency_key="pay-1")

    assert second.pk == first.pk
    assert balance(account) == Decimal("0.00")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("0", "greater than zero"),
        ("-5.00", "greater than zero"),
        (Decimal("-0.01"), "greater than zero"),
        ("abc", "not a number"),
        ("NaN", "greater than zero"),
        ("Infinity", "greater than zero"),
        ("1.001", "two decimal places"),
        ("10000000000.00", r"at most 9999999999\.99"),
    ],
)
def test_charge_refuses_invalid_amount_and_charges_nothing(amount: Decimal | str, message: str) -> None:
    account = AccountFactory.create(balance=Decimal("100.00"))

    with pytest.raises(InvalidAmount, match=message) as excinfo:
        payment_charge(account_id=account.pk, amount=amount, idempotency_key="pay-1")

    assert excinfo.value.code == "invalid_amount"
    assert balance(account) == Decimal("100.00")
    assert Payment.objects.count() == 0


@pytest.mark.django_db
def test_charge_of_missing_account_raises_account_not_found() -> None:
    with pytest.raises(AccountNotFound, match="Account 999 does not exist") as excinfo:
        payment_charge(account_id=999, amount="1.00", idempotency_key="pay-1")

    assert excinfo.value.code == "account_not_found"
    assert Payment.objects.count() == 0


@pytest.mark.django_db
def test_charge_of_declined_card_raises_card_declined_and_charges_nothing() -> None:
    account = AccountFactory.create(holder="Ada", balance=Decimal("100.00"), card_status=CardStatus.DECLINED)

    with pytest.raises(CardDeclined, match=rf"account {account.pk} \(Ada\) was declined") as excinfo:
        payment_charge(account_id=account.pk, amount="10.00", idempotency_key="pay-1")

    assert excinfo.value.code == "card_declined"
    assert balance(account) == Decimal("100.00")
    assert Payment.objects.count() == 0


@pytest.mark.django_db
def test_charge_over_the_balance_raises_insufficient_funds_and_charges_nothing() -> None:
    account = AccountFactory.create(holder="Ada", balance=Decimal("20.00"))

    with pytest.raises(InsufficientFunds, match=r"balance of 20\.00, less than the 20\.01 to charge") as excinfo:
        payment_charge(account_id=account.pk, amount="20.01", idempotency_key="pay-1")

    assert excinfo.value.code == "insufficient_funds"
    assert balance(account) == Decimal("20.00")
    assert Payment.objects.count() == 0


@pytest.mark.django_db
def test_refund_gives_the_amount_back_and_marks_the_payment_refunded() -> None:
    account = AccountFactory.create(balance=Decimal("100.00"))
    payment = payment_charge(account_id=account.pk, amount="30.00", idempotency_key="pay-1")

    refund = payment_refund(payment_id=payment.pk, idempotency_key="refund-1")

    payment.refresh_from_db()
    assert refund.payment_id == payment.pk
    assert refund.amount == Decimal("30.00")
    assert payment.status == PaymentStatus.REFUNDED
    assert balance(account) == Decimal("100.00")


@pytest.mark.django_db
def test_refund_with_same_key_twice_refunds_once() -> None:
    account = AccountFactory.create(balance=Decimal("100.00"))
    payment = payment_charge(account_id=account.pk, amount="30.00", idempotency_key="pay-1")

    first = payment_refund(payment_id=payment.pk, idempotency_key="refund-1")
    second = payment_refund(payment_id=payment.pk, idempotency_key="refund-1")

    assert second.pk == first.pk
    assert Refund.objects.count() == 1
    assert balance(account) == Decimal("100.00")


@pytest.mark.django_db
def test_refund_of_refunded_payment_with_another_key_returns_the_existing_refund() -> None:
    account = AccountFactory.create(balance=Decimal("100.00"))
    payment = payment_charge(account_id=account.pk, amount="30.00", idempotency_key="pay-1")
    first = payment_refund(payment_id=payment.pk, idempotency_key="refund-1")

    second = payment_refund(payment_id=payment.pk, idempotency_key="refund-2")

    assert second.pk == first.pk
    assert second.idempotency_key == "refund-1"
    assert balance(account) == Decimal("100.00")


@pytest.mark.django_db
def test_refund_while_the_gateway_is_down_fails_transiently_and_refunds_nothing() -> None:
    account = AccountFactory.create(balance=Decimal("100.00"))
    payment = payment_charge(account_id=account.pk, amount="30.00", idempotency_key="pay-1")
    Account.objects.filter(pk=account.pk).update(refund_gateway_down=True)

    with pytest.raises(RefundGatewayUnavailable, match=f"payment {payment.pk} .* was not refunded") as excinfo:
        payment_refund(payment_id=payment.pk, idempotency_key="refund-1")

    payment.refresh_from_db()
    assert excinfo.value.code == "refund_gateway_unavailable"
    assert payment.status == PaymentStatus.CAPTURED
    assert Refund.objects.count() == 0
    assert balance(account) == Decimal("70.00")


@pytest.mark.django_db
def test_refund_succeeds_with_the_same_key_once_the_gateway_is_back() -> None:
    account = AccountFactory.create(balance=Decimal("100.00"), refund_gateway_down=True)
    payment = payment_charge(account_id=account.pk, amount="30.00", idempotency_key="pay-1")
    with pytest.raises(RefundGatewayUnavailable):
        payment_refund(payment_id=payment.pk, idempotency_key="refund-1")
    Account.objects.filter(pk=account.pk).update(refund_gateway_down=False)

    refund = payment_refund(payment_id=payment.pk, idempotency_key="refund-1")

    assert refund.amount == Decimal("30.00")
    assert balance(account) == Decimal("100.00")


@pytest.mark.django_db
def test_refund_already_made_is_returned_even_while_the_gateway_is_down() -> None:
    account = AccountFactory.create(balance=Decimal("100.00"))
    payment = payment_charge(account_id=account.pk, amount="30.00", idempotency_key="pay-1")
    first = payment_refund(payment_id=payment.pk, idempotency_key="refund-1")
    Account.objects.filter(pk=account.pk).update(refund_gateway_down=True)

    second = payment_refund(payment_id=payment.pk, idempotency_key="refund-1")

    assert second.pk == first.pk


def test_refund_gateway_unavailable_is_not_a_business_error() -> None:
    assert not issubclass(RefundGatewayUnavailable, PaymentError)


@pytest.mark.django_db
def test_refund_of_missing_payment_raises_payment_not_found() -> None:
    with pytest.raises(PaymentNotFound, match="Payment 999 does not exist") as excinfo:
        payment_refund(payment_id=999, idempotency_key="refund-1")

    assert excinfo.value.code == "payment_not_found"


@pytest.mark.django_db
def test_money_is_conserved_over_charges_refunds_and_failures() -> None:
    rich = AccountFactory.create(balance=Decimal("100.00"))
    poor = AccountFactory.create(balance=Decimal("5.00"))
    before = money_in_the_system()

    paid = payment_charge(account_id=rich.pk, amount="60.00", idempotency_key="a")
    payment_charge(account_id=rich.pk, amount="60.00", idempotency_key="a")
    with pytest.raises(InsufficientFunds):
        payment_charge(account_id=rich.pk, amount="60.00", idempotency_key="b")
    with pytest.raises(InsufficientFunds):
        payment_charge(account_id=poor.pk, amount="5.01", idempotency_key="c")
    payment_charge(account_id=poor.pk, amount="5.00", idempotency_key="d")
    payment_refund(payment_id=paid.pk, idempotency_key="refund-a")
    payment_refund(payment_id=paid.pk, idempotency_key="refund-a")

    assert money_in_the_system() == before
    assert balance(rich) == Decimal("100.00")
    assert balance(poor) == Decimal("0.00")


@pytest.mark.django_db(transaction=True)
def test_concurrent_charges_never_overdraw_the_account(run_concurrently: RunConcurrently) -> None:
    account = AccountFactory.create(balance=Decimal("100.00"))
    before = money_in_the_system()

    results = run_concurrently(
        *(
            lambda n=n: payment_charge(account_id=account.pk, amount="30.00", idempotency_key=f"pay-{n}")
            for n in range(10)
        )
    )

    assert len([result for result in results if isinstance(result, Payment)]) == 3
    assert len([result for result in results if isinstance(result, InsufficientFunds)]) == 7
    assert balance(account) == Decimal("10.00")
    assert money_in_the_system() == before


@pytest.mark.django_db(transaction=True)
def test_concurrent_charges_with_the_same_key_capture_once(run_concurrently: RunConcurrently) -> None:
    # The balance covers one charge only, so a repeat that missed the first payment would fail.
    account = AccountFactory.create(balance=Decimal("50.00"))

    results = run_concurrently(
        *(lambda: payment_charge(account_id=account.pk, amount="30.00", idempotency_key="same") for _ in range(4))
    )

    assert all(isinstance(result, Payment) for result in results), results
    assert len({result.pk for result in results}) == 1
    assert Payment.objects.count() == 1
    assert balance(account) == Decimal("20.00")


@pytest.mark.django_db(transaction=True)
def test_concurrent_refunds_of_one_payment_refund_once(run_concurrently: RunConcurrently) -> None:
    account = AccountFactory.create(balance=Decimal("100.00"))
    payment = payment_charge(account_id=account.pk, amount="30.00", idempotency_key="pay-1")

    results = run_concurrently(
        *(lambda n=n: payment_refund(payment_id=payment.pk, idempotency_key=f"refund-{n}") for n in range(4))
    )

    assert all(isinstance(result, Refund) for result in results), results
    assert len({result.pk for result in results}) == 1
    assert balance(account) == Decimal("100.00")


def test_payment_errors_share_a_base_with_stable_codes() -> None:
    errors = [InvalidAmount, AccountNotFound, CardDeclined, InsufficientFunds, PaymentNotFound]

    assert all(issubclass(error, PaymentError) for error in errors)
    assert [error.code for error in errors] == [
        "invalid_amount",
        "account_not_found",
        "card_declined",
        "insufficient_funds",
        "payment_not_found",
    ]
