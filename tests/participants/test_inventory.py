"""Tests of the inventory service."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from participants.inventory.errors import (
    InvalidReservation,
    InventoryError,
    OutOfStock,
    ReservationNotFound,
    UnknownSku,
)
from participants.inventory.models import Reservation, ReservationLine, ReservationStatus, StockItem
from participants.inventory.services import stock_release, stock_reserve
from tests.factories import StockItemFactory

if TYPE_CHECKING:
    from tests.participants.conftest import RunConcurrently


def stock(sku: str) -> tuple[int, int]:
    item = StockItem.objects.get(sku=sku)
    return item.available, item.reserved


def totals() -> dict[str, int]:
    return {item.sku: item.available + item.reserved for item in StockItem.objects.all()}


@pytest.mark.django_db
def test_reserve_moves_units_from_available_to_reserved() -> None:
    StockItemFactory.create(sku="mug", available=10)
    StockItemFactory.create(sku="tee", available=5)

    reservation = stock_reserve(
        lines=[{"sku": "mug", "quantity": 3}, {"sku": "tee", "quantity": 5}], idempotency_key="r-1"
    )

    assert reservation.status == ReservationStatus.RESERVED
    assert stock("mug") == (7, 3)
    assert stock("tee") == (0, 5)
    assert {(line.item.sku, line.quantity) for line in reservation.lines.all()} == {("mug", 3), ("tee", 5)}


@pytest.mark.django_db
def test_reserve_adds_up_lines_with_the_same_sku() -> None:
    StockItemFactory.create(sku="mug", available=10)

    reservation = stock_reserve(
        lines=[{"sku": "mug", "quantity": 2}, {"sku": "mug", "quantity": 3}], idempotency_key="r-1"
    )

    assert stock("mug") == (5, 5)
    assert [(line.item.sku, line.quantity) for line in reservation.lines.all()] == [("mug", 5)]


@pytest.mark.django_db
def test_reserve_with_same_key_twice_reserves_once() -> None:
    StockItemFactory.create(sku="mug", available=10)

    first = stock_reserve(lines=[{"sku": "mug", "quantity": 4}], idempotency_key="r-1")
    second = stock_reserve(lines=[{"sku": "mug", "quantity": 4}], idempotency_key="r-1")

    assert second.pk == first.pk
    assert Reservation.objects.count() == 1
    assert ReservationLine.objects.count() == 1
    assert stock("mug") == (6, 4)


@pytest.mark.django_db
def test_reserve_repeated_after_stock_ran_out_returns_the_first_reservation() -> None:
    StockItemFactory.create(sku="mug", available=4)
    first = stock_reserve(lines=[{"sku": "mug", "quantity": 4}], idempotency_key="r-1")

    second = stock_reserve(lines=[{"sku": "mug", "quantity": 4}], idempotency_key="r-1")

    assert second.pk == first.pk
    assert stock("mug") == (0, 4)


@pytest.mark.django_db
def test_reserve_of_unknown_sku_raises_and_reserves_nothing() -> None:
    StockItemFactory.create(sku="mug", available=10)

    with pytest.raises(UnknownSku, match="SKU 'ghost' is not stocked") as excinfo:
        stock_reserve(lines=[{"sku": "mug", "quantity": 1}, {"sku": "ghost", "quantity": 1}], idempotency_key="r-1")

    assert excinfo.value.code == "unknown_sku"
    assert stock("mug") == (10, 0)
    assert Reservation.objects.count() == 0


@pytest.mark.django_db
def test_reserve_of_more_than_available_raises_out_of_stock_and_reserves_nothing() -> None:
    StockItemFactory.create(sku="mug", available=2)
    StockItemFactory.create(sku="tee", available=10)

    with pytest.raises(OutOfStock, match=r"^SKU 'mug' has 2 available, 5 requested\.$") as excinfo:
        stock_reserve(lines=[{"sku": "tee", "quantity": 1}, {"sku": "mug", "quantity": 5}], idempotency_key="r-1")

    assert excinfo.value.code == "out_of_stock"
    assert stock("mug") == (2, 0)
    assert stock("tee") == (10, 0)
    assert Reservation.objects.count() == 0
    assert ReservationLine.objects.count() == 0


@pytest.mark.django_db
def test_reserve_counts_duplicate_lines_together_against_stock() -> None:
    StockItemFactory.create(sku="mug", available=4)

    with pytest.raises(OutOfStock, match="SKU 'mug' has 4 available, 6 requested"):
        stock_reserve(lines=[{"sku": "mug", "quantity": 3}, {"sku": "mug", "quantity": 3}], idempotency_key="r-1")

    assert stock("mug") == (4, 0)


@pytest.mark.django_db
def test_refused_reservation_can_be_retried_with_the_same_key_once_restocked() -> None:
    item = StockItemFactory.create(sku="mug", available=1)
    with pytest.raises(OutOfStock):
        stock_reserve(lines=[{"sku": "mug", "quantity": 2}], idempotency_key="r-1")
    item.available = 5
    item.save()

    reservation = stock_reserve(lines=[{"sku": "mug", "quantity": 2}], idempotency_key="r-1")

    assert reservation.status == ReservationStatus.RESERVED
    assert stock("mug") == (3, 2)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([], "at least one line"),
        ([{"sku": "mug", "quantity": 0}], "quantity 0"),
        ([{"sku": "mug", "quantity": -2}], "quantity -2"),
        ([{"sku": "mug"}], "quantity None"),
        ([{"quantity": 1}], "no SKU"),
    ],
)
def test_reserve_refuses_invalid_lines_and_reserves_nothing(lines: list[dict[str, Any]], message: str) -> None:
    StockItemFactory.create(sku="mug", available=10)

    with pytest.raises(InvalidReservation, match=message) as excinfo:
        stock_reserve(lines=lines, idempotency_key="r-1")

    assert excinfo.value.code == "invalid_reservation"
    assert stock("mug") == (10, 0)
    assert Reservation.objects.count() == 0


@pytest.mark.django_db
def test_release_moves_units_back_to_available() -> None:
    StockItemFactory.create(sku="mug", available=10)
    StockItemFactory.create(sku="tee", available=10)
    reservation = stock_reserve(
        lines=[{"sku": "mug", "quantity": 3}, {"sku": "tee", "quantity": 2}], idempotency_key="r-1"
    )

    released = stock_release(reservation_id=reservation.pk, idempotency_key="release-1")

    assert released.status == ReservationStatus.RELEASED
    assert released.release_key == "release-1"
    assert released.released_at is not None
    assert stock("mug") == (10, 0)
    assert stock("tee") == (10, 0)


@pytest.mark.django_db
def test_release_with_same_key_twice_releases_once() -> None:
    StockItemFactory.create(sku="mug", available=10)
    reservation = stock_reserve(lines=[{"sku": "mug", "quantity": 3}], idempotency_key="r-1")
    stock_reserve(lines=[{"sku": "mug", "quantity": 2}], idempotency_key="r-2")
    first = stock_release(reservation_id=reservation.pk, idempotency_key="release-1")

    second = stock_release(reservation_id=reservation.pk, idempotency_key="release-1")

    assert second.pk == first.pk
    assert second.released_at == first.released_at
    assert stock("mug") == (8, 2)


@pytest.mark.django_db
def test_release_of_released_reservation_with_another_key_releases_nothing_more() -> None:
    StockItemFactory.create(sku="mug", available=10)
    reservation = stock_reserve(lines=[{"sku": "mug", "quantity": 3}], idempotency_key="r-1")
    stock_release(reservation_id=reservation.pk, idempotency_key="release-1")

    again = stock_release(reservation_id=reservation.pk, idempotency_key="release-2")

    assert again.release_key == "release-1"
    assert stock("mug") == (10, 0)


@pytest.mark.django_db
def test_release_of_missing_reservation_raises_reservation_not_found() -> None:
    with pytest.raises(ReservationNotFound, match="Reservation 999 does not exist") as excinfo:
        stock_release(reservation_id=999, idempotency_key="release-1")

    assert excinfo.value.code == "reservation_not_found"


@pytest.mark.django_db
def test_available_plus_reserved_never_changes() -> None:
    StockItemFactory.create(sku="mug", available=10)
    StockItemFactory.create(sku="tee", available=3)
    before = totals()

    first = stock_reserve(lines=[{"sku": "mug", "quantity": 4}, {"sku": "tee", "quantity": 3}], idempotency_key="a")
    stock_reserve(lines=[{"sku": "mug", "quantity": 4}, {"sku": "tee", "quantity": 3}], idempotency_key="a")
    with pytest.raises(OutOfStock):
        stock_reserve(lines=[{"sku": "tee", "quantity": 1}], idempotency_key="b")
    second = stock_reserve(lines=[{"sku": "mug", "quantity": 6}], idempotency_key="c")
    stock_release(reservation_id=first.pk, idempotency_key="release-a")
    stock_release(reservation_id=first.pk, idempotency_key="release-a")
    stock_release(reservation_id=second.pk, idempotency_key="release-c")

    assert totals() == before
    assert stock("mug") == (10, 0)
    assert stock("tee") == (3, 0)


@pytest.mark.django_db(transaction=True)
def test_concurrent_reservations_of_the_last_units_never_oversell(run_concurrently: RunConcurrently) -> None:
    StockItemFactory.create(sku="mug", available=5)

    results = run_concurrently(
        *(lambda n=n: stock_reserve(lines=[{"sku": "mug", "quantity": 1}], idempotency_key=f"r-{n}") for n in range(12))
    )

    reserved = [result for result in results if isinstance(result, Reservation)]
    refused = [result for result in results if isinstance(result, OutOfStock)]
    assert len(reserved) == 5
    assert len(refused) == 7
    assert stock("mug") == (0, 5)
    assert Reservation.objects.count() == 5


@pytest.mark.django_db(transaction=True)
def test_concurrent_reservations_with_the_same_key_create_one_reservation(
    run_concurrently: RunConcurrently,
) -> None:
    StockItemFactory.create(sku="mug", available=10)

    results = run_concurrently(
        *(lambda: stock_reserve(lines=[{"sku": "mug", "quantity": 3}], idempotency_key="same") for _ in range(4))
    )

    assert all(isinstance(result, Reservation) for result in results), results
    assert len({result.pk for result in results}) == 1
    assert Reservation.objects.count() == 1
    assert stock("mug") == (7, 3)


@pytest.mark.django_db(transaction=True)
def test_concurrent_reservations_with_the_same_key_but_other_skus_create_one_reservation(
    run_concurrently: RunConcurrently,
) -> None:
    StockItemFactory.create(sku="mug", available=10)
    StockItemFactory.create(sku="tee", available=10)

    results = run_concurrently(
        lambda: stock_reserve(lines=[{"sku": "mug", "quantity": 1}], idempotency_key="same"),
        lambda: stock_reserve(lines=[{"sku": "tee", "quantity": 1}], idempotency_key="same"),
    )

    assert all(isinstance(result, Reservation) for result in results), results
    assert results[0].pk == results[1].pk
    assert Reservation.objects.count() == 1
    assert sum(stock(sku)[1] for sku in ("mug", "tee")) == 1
    assert totals() == {"mug": 10, "tee": 10}


@pytest.mark.django_db(transaction=True)
def test_concurrent_reservations_of_overlapping_skus_do_not_deadlock(
    run_concurrently: RunConcurrently,
) -> None:
    StockItemFactory.create(sku="mug", available=50)
    StockItemFactory.create(sku="tee", available=50)

    def reserve(n: int) -> Reservation:
        # Half the calls list the SKUs the other way round, which would deadlock without ordered locks.
        lines = [{"sku": "mug", "quantity": 1}, {"sku": "tee", "quantity": 1}]
        return stock_reserve(lines=lines if n % 2 else lines[::-1], idempotency_key=f"r-{n}")

    results = run_concurrently(*(lambda n=n: reserve(n) for n in range(10)))

    assert all(isinstance(result, Reservation) for result in results), results
    assert stock("mug") == (40, 10)
    assert stock("tee") == (40, 10)


@pytest.mark.django_db(transaction=True)
def test_concurrent_releases_release_once(run_concurrently: RunConcurrently) -> None:
    StockItemFactory.create(sku="mug", available=10)
    reservation = stock_reserve(lines=[{"sku": "mug", "quantity": 4}], idempotency_key="r-1")

    results = run_concurrently(
        *(lambda n=n: stock_release(reservation_id=reservation.pk, idempotency_key=f"release-{n}") for n in range(4))
    )

    assert all(isinstance(result, Reservation) for result in results), results
    assert stock("mug") == (10, 0)


def test_inventory_errors_share_a_base_with_stable_codes() -> None:
    errors = [InvalidReservation, UnknownSku, OutOfStock, ReservationNotFound]

    assert all(issubclass(error, InventoryError) for error in errors)
    assert [error.code for error in errors] == [
        "invalid_reservation",
        "unknown_sku",
        "out_of_stock",
        "reservation_not_found",
    ]
