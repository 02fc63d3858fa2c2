"""Writes of the loyalty service: award points, idempotent on the request's key, and price an amount in points."""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal, InvalidOperation

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction

from participants.loyalty.errors import InvalidAmount, InvalidAward, LoyaltyUnavailable
from participants.loyalty.models import LoyaltyAccount, PointsEntry

# What the largest order (9999999999.99) earns; far below PositiveBigIntegerField's limit.
MAX_POINTS = 9_999_999_999
MAX_REASON_LENGTH = 200


def points_award(*, customer_email: str, points: int, reason: str, idempotency_key: str) -> PointsEntry:
    """Add ``points`` to the customer's account, opening it on the first award, and record the entry.

    E-mail addresses are matched without regard to case. A repeat with the same ``idempotency_key``
    returns the first call's entry and awards nothing, even while the service is down. Raises
    ``InvalidAward`` (a refusal), or the transient ``LoyaltyUnavailable`` while the account's
    "loyalty service down" switch is on; either way nothing is awarded.
    """
    with transaction.atomic():
        existing = PointsEntry.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing

        email = _to_email(customer_email)
        _validate_award(email=email, points=points, reason=reason)
        # Lock the account (or insert it: a concurrent first award waits on the unique e-mail), so
        # awards to one customer queue and every entry's points land on the balance exactly once.
        account, _ = LoyaltyAccount.objects.select_for_update().get_or_create(customer_email=email)
        # Looked up after the lock: a concurrent call with this key that held it has committed by now.
        existing = PointsEntry.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing
        if account.service_down:
            raise LoyaltyUnavailable(
                f"The loyalty service is down for {email}, so the {points} points for {reason!r} were not "
                f"awarded. Retry later; an operator can clear 'loyalty service down' on the account."
            )

        try:
            # A savepoint, so losing a race on the key (from a call for another customer, hence
            # another lock) leaves the outer transaction usable to read the winner's entry.
            with transaction.atomic():
                entry = PointsEntry.objects.create(
                    account=account, points=points, reason=reason, idempotency_key=idempotency_key
                )
        except IntegrityError:
            existing = PointsEntry.objects.filter(idempotency_key=idempotency_key).first()
            if existing is None:
                raise
            return existing
        account.points += points
        account.save(update_fields=["points", "updated_at"])
        return entry


def points_for_amount(amount: Decimal | str | int) -> int:
    """Points earned by spending ``amount``: one per whole currency unit, cents rounded down.

    ``"12.99"`` earns 12 points and ``"0.99"`` earns none. Raises ``InvalidAmount`` for anything
    but a number of zero or more.
    """
    try:
        value = Decimal(str(amount))
    except InvalidOperation:
        raise InvalidAmount(f"The amount {amount!r} is not a number.") from None
    if not value.is_finite() or value < 0:
        raise InvalidAmount(f"The amount {amount!r} must be a number of zero or more.")
    return int(value.to_integral_value(rounding=ROUND_DOWN))


def _to_email(customer_email: str) -> str:
    email = customer_email.strip().lower()
    try:
        validate_email(email)
    except ValidationError:
        raise InvalidAward(f"{customer_email!r} is not a valid customer e-mail address to award points to.") from None
    return email


def _validate_award(*, email: str, points: int, reason: str) -> None:
    if not isinstance(points, int) or isinstance(points, bool) or not 0 <= points <= MAX_POINTS:
        raise InvalidAward(f"{email} cannot be awarded {points!r} points: give a whole number from 0 to {MAX_POINTS}.")
    if not reason.strip() or len(reason) > MAX_REASON_LENGTH:
        raise InvalidAward(
            f"The award to {email} needs a reason of 1 to {MAX_REASON_LENGTH} characters, not {len(reason)}."
        )
