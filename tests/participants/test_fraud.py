"""Tests of the fraud service."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

import pytest

from participants.fraud.errors import FraudError, InvalidScreening, TravellerBlocked
from participants.fraud.models import BlockedTraveller, Screening, Verdict
from participants.fraud.services import screening_check
from tests.factories import BlockedTravellerFactory

if TYPE_CHECKING:
    from tests.conftest import RunConcurrently


@pytest.mark.django_db
def test_check_of_a_traveller_not_blocked_records_an_approved_screening() -> None:
    screening = screening_check(traveller_email="ada@example.com", amount="1250.5", idempotency_key="s-1")

    screening.refresh_from_db()
    assert screening.verdict == Verdict.APPROVED
    assert screening.traveller_email == "ada@example.com"
    assert screening.amount == Decimal("1250.50")
    assert screening.reason == ""


@pytest.mark.django_db
def test_check_of_a_blocked_traveller_records_the_refusal_and_raises_traveller_blocked() -> None:
    BlockedTravellerFactory.create(email="mallory@example.com", reason="stolen card")

    with pytest.raises(TravellerBlocked, match=r"mallory@example\.com is on the blocked list \(stolen card\)") as exc:
        screening_check(traveller_email="mallory@example.com", amount="100.00", idempotency_key="s-1")

    screening = Screening.objects.get()
    assert exc.value.code == "traveller_blocked"
    assert screening.verdict == Verdict.REFUSED
    assert screening.reason == "stolen card"
    assert screening.idempotency_key == "s-1"


@pytest.mark.django_db
def test_blocked_list_is_matched_without_regard_to_case() -> None:
    BlockedTravellerFactory.create(email="Mallory@Example.com")

    with pytest.raises(TravellerBlocked):
        screening_check(traveller_email="mallory@EXAMPLE.com", amount="100.00", idempotency_key="s-1")


@pytest.mark.django_db
def test_check_with_same_key_twice_screens_once() -> None:
    first = screening_check(traveller_email="ada@example.com", amount="100.00", idempotency_key="s-1")
    second = screening_check(traveller_email="ada@example.com", amount="100.00", idempotency_key="s-1")

    assert second.pk == first.pk
    assert Screening.objects.count() == 1


@pytest.mark.django_db
def test_repeat_keeps_the_first_verdict_when_the_blocked_list_changed_since() -> None:
    approved = screening_check(traveller_email="ada@example.com", amount="100.00", idempotency_key="s-1")
    BlockedTravellerFactory.create(email="ada@example.com")

    again = screening_check(traveller_email="ada@example.com", amount="100.00", idempotency_key="s-1")

    assert again.pk == approved.pk
    assert again.verdict == Verdict.APPROVED
    assert Screening.objects.count() == 1


@pytest.mark.django_db
def test_repeat_of_a_refusal_is_refused_again_without_a_second_screening() -> None:
    blocked = BlockedTravellerFactory.create(email="mallory@example.com")
    with pytest.raises(TravellerBlocked):
        screening_check(traveller_email="mallory@example.com", amount="100.00", idempotency_key="s-1")
    blocked.delete()

    with pytest.raises(TravellerBlocked, match=r"screening \d+ refused"):
        screening_check(traveller_email="mallory@example.com", amount="100.00", idempotency_key="s-1")

    assert Screening.objects.count() == 1


@pytest.mark.django_db
def test_the_same_traveller_with_a_new_key_is_screened_again() -> None:
    screening_check(traveller_email="ada@example.com", amount="100.00", idempotency_key="s-1")
    BlockedTravellerFactory.create(email="ada@example.com")

    with pytest.raises(TravellerBlocked):
        screening_check(traveller_email="ada@example.com", amount="100.00", idempotency_key="s-2")

    assert list(Screening.objects.order_by("id").values_list("verdict", flat=True)) == [
        Verdict.APPROVED,
        Verdict.REFUSED,
    ]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("email", "amount", "message"),
    [
        ("not-an-address", "100.00", "not a valid traveller e-mail address"),
        ("ada@example.com", "0", "greater than zero"),
        ("ada@example.com", "-1.00", "greater than zero"),
        ("ada@example.com", "abc", "not a number"),
        ("ada@example.com", "NaN", "greater than zero"),
        ("ada@example.com", "1.001", "two decimal places"),
    ],
)
def test_invalid_request_raises_invalid_screening_and_records_nothing(email: str, amount: str, message: str) -> None:
    with pytest.raises(InvalidScreening, match=message) as excinfo:
        screening_check(traveller_email=email, amount=amount, idempotency_key="s-1")

    assert excinfo.value.code == "invalid_screening"
    assert Screening.objects.count() == 0


@pytest.mark.django_db
def test_screening_changes_nothing_but_its_own_record() -> None:
    BlockedTravellerFactory.create(email="mallory@example.com")

    screening_check(traveller_email="ada@example.com", amount="100.00", idempotency_key="s-1")
    with pytest.raises(TravellerBlocked):
        screening_check(traveller_email="mallory@example.com", amount="100.00", idempotency_key="s-2")

    assert list(BlockedTraveller.objects.values_list("email", flat=True)) == ["mallory@example.com"]
    assert Screening.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_concurrent_checks_with_the_same_key_screen_once(run_concurrently: RunConcurrently) -> None:
    results = run_concurrently(
        *(
            lambda: screening_check(traveller_email="ada@example.com", amount="100.00", idempotency_key="same")
            for _ in range(4)
        )
    )

    assert all(isinstance(result, Screening) for result in results), results
    assert len({result.pk for result in results}) == 1
    assert Screening.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_checks_of_a_blocked_traveller_all_refuse_with_one_record(
    run_concurrently: RunConcurrently,
) -> None:
    BlockedTravellerFactory.create(email="mallory@example.com")

    results = run_concurrently(
        *(
            lambda: screening_check(traveller_email="mallory@example.com", amount="100.00", idempotency_key="same")
            for _ in range(4)
        )
    )

    assert all(isinstance(result, TravellerBlocked) for result in results), results
    assert Screening.objects.count() == 1


def test_fraud_errors_share_a_base_with_stable_codes() -> None:
    errors = [InvalidScreening, TravellerBlocked]

    assert all(issubclass(error, FraudError) for error in errors)
    assert [error.code for error in errors] == ["invalid_screening", "traveller_blocked"]
