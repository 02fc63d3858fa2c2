"""Tests of the loyalty service."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
from django.contrib import admin
from django.db.models import Sum
from django.test import Client, RequestFactory
from django.urls import reverse

from participants.loyalty.errors import InvalidAmount, InvalidAward, LoyaltyError, LoyaltyUnavailable
from participants.loyalty.models import LoyaltyAccount, PointsEntry
from participants.loyalty.services import points_award, points_for_amount
from tests.factories import LoyaltyAccountFactory, PointsEntryFactory

if TYPE_CHECKING:
    from tests.conftest import RunConcurrently


def points_of(email: str) -> int:
    return LoyaltyAccount.objects.get(customer_email=email).points


def conserved() -> bool:
    """Every account's points equal the sum of its entries."""
    return all(
        account.points == (account.entries.aggregate(total=Sum("points"))["total"] or 0)
        for account in LoyaltyAccount.objects.all()
    )


@pytest.mark.django_db
def test_first_award_opens_the_account_and_records_the_entry() -> None:
    entry = points_award(customer_email="ada@example.com", points=42, reason="order 7", idempotency_key="m-1")

    entry.refresh_from_db()
    assert entry.account.customer_email == "ada@example.com"
    assert (entry.points, entry.reason, entry.idempotency_key) == (42, "order 7", "m-1")
    assert points_of("ada@example.com") == 42


@pytest.mark.django_db
def test_later_awards_add_to_the_same_account() -> None:
    points_award(customer_email="ada@example.com", points=42, reason="order 7", idempotency_key="m-1")
    points_award(customer_email="ada@example.com", points=8, reason="order 9", idempotency_key="m-2")

    assert LoyaltyAccount.objects.count() == 1
    assert points_of("ada@example.com") == 50
    assert conserved()


@pytest.mark.django_db
def test_awards_match_the_address_without_regard_to_case() -> None:
    points_award(customer_email="Ada@Example.COM", points=5, reason="order 1", idempotency_key="m-1")
    points_award(customer_email=" ada@example.com ", points=5, reason="order 2", idempotency_key="m-2")

    assert list(LoyaltyAccount.objects.values_list("customer_email", "points")) == [("ada@example.com", 10)]


@pytest.mark.django_db
def test_award_with_same_key_twice_awards_once() -> None:
    first = points_award(customer_email="ada@example.com", points=42, reason="order 7", idempotency_key="m-1")
    second = points_award(customer_email="ada@example.com", points=42, reason="order 7", idempotency_key="m-1")

    assert second.pk == first.pk
    assert PointsEntry.objects.count() == 1
    assert points_of("ada@example.com") == 42


@pytest.mark.django_db
def test_award_of_zero_points_is_recorded_and_changes_no_balance() -> None:
    LoyaltyAccountFactory.create(customer_email="ada@example.com", points=0)
    PointsEntryFactory.create(account__customer_email="ada@example.com", points=3)

    entry = points_award(customer_email="ada@example.com", points=0, reason="order 8", idempotency_key="m-1")

    assert entry.points == 0
    assert points_of("ada@example.com") == 3
    assert conserved()


@pytest.mark.django_db
def test_award_while_the_service_is_down_fails_transiently_and_changes_nothing() -> None:
    PointsEntryFactory.create(account__customer_email="ada@example.com", points=10)
    LoyaltyAccount.objects.filter(customer_email="ada@example.com").update(service_down=True)

    with pytest.raises(LoyaltyUnavailable, match=r"down for ada@example\.com, so the 42 points") as excinfo:
        points_award(customer_email="ada@example.com", points=42, reason="order 7", idempotency_key="m-1")

    assert excinfo.value.code == "loyalty_unavailable"
    assert points_of("ada@example.com") == 10
    assert not PointsEntry.objects.filter(idempotency_key="m-1").exists()
    assert PointsEntry.objects.count() == 1


@pytest.mark.django_db
def test_award_succeeds_with_the_same_key_once_the_service_is_back() -> None:
    LoyaltyAccountFactory.create(customer_email="ada@example.com", service_down=True)
    with pytest.raises(LoyaltyUnavailable):
        points_award(customer_email="ada@example.com", points=42, reason="order 7", idempotency_key="m-1")
    LoyaltyAccount.objects.filter(customer_email="ada@example.com").update(service_down=False)

    entry = points_award(customer_email="ada@example.com", points=42, reason="order 7", idempotency_key="m-1")

    assert entry.points == 42
    assert points_of("ada@example.com") == 42


@pytest.mark.django_db
def test_award_already_made_is_returned_even_while_the_service_is_down() -> None:
    first = points_award(customer_email="ada@example.com", points=42, reason="order 7", idempotency_key="m-1")
    LoyaltyAccount.objects.filter(customer_email="ada@example.com").update(service_down=True)

    second = points_award(customer_email="ada@example.com", points=42, reason="order 7", idempotency_key="m-1")

    assert second.pk == first.pk
    assert points_of("ada@example.com") == 42


@pytest.mark.django_db
def test_the_service_being_down_for_one_customer_leaves_the_others_be() -> None:
    LoyaltyAccountFactory.create(customer_email="ada@example.com", service_down=True)

    points_award(customer_email="bob@example.com", points=5, reason="order 2", idempotency_key="m-2")

    assert points_of("bob@example.com") == 5


def test_loyalty_unavailable_is_not_a_business_error() -> None:
    assert not issubclass(LoyaltyUnavailable, LoyaltyError)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("email", "points", "reason", "message"),
    [
        ("nobody", 5, "order 1", "'nobody' is not a valid customer e-mail address"),
        ("ada@example.com", -1, "order 1", "cannot be awarded -1 points"),
        ("ada@example.com", True, "order 1", "cannot be awarded True points"),
        ("ada@example.com", 2.5, "order 1", "cannot be awarded 2.5 points"),
        ("ada@example.com", "5", "order 1", "cannot be awarded '5' points"),
        ("ada@example.com", 10_000_000_000, "order 1", "whole number from 0 to 9999999999"),
        ("ada@example.com", 5, "  ", "needs a reason of 1 to 200 characters, not 2"),
        ("ada@example.com", 5, "x" * 201, "needs a reason of 1 to 200 characters, not 201"),
    ],
)
def test_invalid_award_is_refused_and_changes_nothing(email: str, points: Any, reason: str, message: str) -> None:
    with pytest.raises(InvalidAward, match=message) as excinfo:
        points_award(customer_email=email, points=points, reason=reason, idempotency_key="m-1")

    assert excinfo.value.code == "invalid_award"
    assert LoyaltyAccount.objects.count() == 0
    assert PointsEntry.objects.count() == 0


@pytest.mark.parametrize(
    ("amount", "points"),
    [
        ("12.99", 12),
        ("12.01", 12),
        ("0.99", 0),
        ("0", 0),
        ("100", 100),
        ("100.00", 100),
        (Decimal("49.50"), 49),
        (7, 7),
        ("1E+3", 1000),
        ("9999999999.99", 9_999_999_999),
    ],
)
def test_points_for_amount_gives_one_point_per_whole_unit_rounded_down(
    amount: Decimal | str | int, points: int
) -> None:
    assert points_for_amount(amount) == points


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("abc", "not a number"),
        ("", "not a number"),
        ("-0.01", "zero or more"),
        ("NaN", "zero or more"),
        ("Infinity", "zero or more"),
    ],
)
def test_points_for_amount_refuses_what_is_not_an_amount(amount: str, message: str) -> None:
    with pytest.raises(InvalidAmount, match=message) as excinfo:
        points_for_amount(amount)

    assert excinfo.value.code == "invalid_amount"


@pytest.mark.django_db
def test_points_for_the_largest_order_can_be_awarded() -> None:
    points = points_for_amount("9999999999.99")

    points_award(customer_email="ada@example.com", points=points, reason="order 1", idempotency_key="m-1")

    assert points_of("ada@example.com") == 9_999_999_999


def test_loyalty_errors_share_a_base_with_stable_codes() -> None:
    errors = [InvalidAward, InvalidAmount]

    assert all(issubclass(error, LoyaltyError) for error in errors)
    assert [error.code for error in errors] == ["invalid_award", "invalid_amount"]


@pytest.mark.django_db(transaction=True)
def test_concurrent_first_awards_to_one_customer_open_one_account_and_add_every_award(
    run_concurrently: RunConcurrently,
) -> None:
    results = run_concurrently(
        *(
            lambda n=n: points_award(
                customer_email="ada@example.com", points=10, reason=f"order {n}", idempotency_key=f"m-{n}"
            )
            for n in range(8)
        )
    )

    assert all(isinstance(result, PointsEntry) for result in results), results
    assert LoyaltyAccount.objects.count() == 1
    assert points_of("ada@example.com") == 80
    assert conserved()


@pytest.mark.django_db(transaction=True)
def test_concurrent_awards_with_the_same_key_award_once(run_concurrently: RunConcurrently) -> None:
    results = run_concurrently(
        *(
            lambda: points_award(customer_email="ada@example.com", points=42, reason="order 7", idempotency_key="same")
            for _ in range(4)
        )
    )

    assert all(isinstance(result, PointsEntry) for result in results), results
    assert len({result.pk for result in results}) == 1
    assert PointsEntry.objects.count() == 1
    assert points_of("ada@example.com") == 42


@pytest.mark.django_db(transaction=True)
def test_concurrent_awards_with_the_same_key_for_two_customers_award_once(run_concurrently: RunConcurrently) -> None:
    results = run_concurrently(
        *(
            lambda email=email: points_award(customer_email=email, points=42, reason="order 7", idempotency_key="same")
            for email in ["ada@example.com", "bob@example.com"] * 2
        )
    )

    assert all(isinstance(result, PointsEntry) for result in results), results
    assert len({result.pk for result in results}) == 1
    assert LoyaltyAccount.objects.aggregate(total=Sum("points"))["total"] == 42
    assert conserved()


@pytest.mark.django_db(transaction=True)
def test_concurrent_awards_while_the_service_is_down_all_fail_and_change_nothing(
    run_concurrently: RunConcurrently,
) -> None:
    LoyaltyAccountFactory.create(customer_email="ada@example.com", service_down=True)

    results = run_concurrently(
        *(
            lambda n=n: points_award(
                customer_email="ada@example.com", points=10, reason=f"order {n}", idempotency_key=f"m-{n % 2}"
            )
            for n in range(4)
        )
    )

    assert all(isinstance(result, LoyaltyUnavailable) for result in results), results
    assert PointsEntry.objects.count() == 0
    assert points_of("ada@example.com") == 0


# --- admin ---


@pytest.mark.django_db
def test_operator_switches_the_service_down_from_the_account_list_and_keeps_the_points(admin_client: Client) -> None:
    account = LoyaltyAccountFactory.create(customer_email="ada@example.com")
    points_award(customer_email="ada@example.com", points=42, reason="order 7", idempotency_key="m-1")

    response = admin_client.post(
        reverse("admin:loyalty_loyaltyaccount_changelist"),
        {
            "form-TOTAL_FORMS": "1",
            "form-INITIAL_FORMS": "1",
            "form-0-id": str(account.pk),
            "form-0-service_down": "on",
            "_save": "Save",
        },
    )

    account.refresh_from_db()
    assert response.status_code == 302
    assert (account.service_down, account.points) == (True, 42)


@pytest.mark.django_db
def test_operator_cannot_change_points_or_address_of_an_account(admin_client: Client) -> None:
    account = LoyaltyAccountFactory.create(customer_email="ada@example.com")
    PointsEntryFactory.create(account=account, points=42)

    response = admin_client.post(
        reverse("admin:loyalty_loyaltyaccount_change", args=[account.pk]),
        {
            "customer_email": "eve@example.com",
            "points": "1000000",
            "service_down": "on",
            "entries-TOTAL_FORMS": "0",
            "entries-INITIAL_FORMS": "1",
        },
    )

    account.refresh_from_db()
    assert response.status_code == 302
    assert (account.customer_email, account.points, account.service_down) == ("ada@example.com", 42, True)


@pytest.mark.django_db
def test_operator_opens_an_account_ahead_of_its_first_award_to_switch_the_service_down(admin_client: Client) -> None:
    response = admin_client.post(
        reverse("admin:loyalty_loyaltyaccount_add"),
        {
            "customer_email": "Ada@Example.com",
            "points": "500",
            "service_down": "on",
            "entries-TOTAL_FORMS": "0",
            "entries-INITIAL_FORMS": "0",
        },
    )

    assert response.status_code == 302
    account = LoyaltyAccount.objects.get()
    assert (account.customer_email, account.points, account.service_down) == ("ada@example.com", 0, True)
    with pytest.raises(LoyaltyUnavailable):
        points_award(customer_email="ada@example.com", points=5, reason="order 1", idempotency_key="m-1")


@pytest.mark.django_db
def test_accounts_cannot_be_deleted(rf: RequestFactory, admin_user: Any) -> None:
    request = rf.get("/")
    request.user = admin_user

    assert not admin.site.get_model_admin(LoyaltyAccount).has_delete_permission(request)
