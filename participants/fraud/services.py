"""Writes of the fraud service: screen a traveller, idempotent on the request's key."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction

from participants.fraud.errors import InvalidScreening, TravellerBlocked
from participants.fraud.models import BlockedTraveller, Screening, Verdict

CENT = Decimal("0.01")
# DecimalField(max_digits=12, decimal_places=2) holds at most ten integer digits.
MAX_AMOUNT = Decimal("9999999999.99")


def screening_check(*, traveller_email: str, amount: Decimal | str, idempotency_key: str) -> Screening:
    """Screen a traveller about to spend ``amount`` and record the verdict.

    Returns the approved screening. When the traveller is on the blocked list, the refused screening
    is recorded and ``TravellerBlocked`` is raised. A repeat with the same ``idempotency_key`` gets the
    first verdict again (even if an operator changed the blocked list since) and records nothing.
    Raises ``InvalidScreening``, recording nothing, for a bad e-mail address or amount.
    It only reads and records: there is nothing to undo.
    """
    screening = _screen(traveller_email=traveller_email, amount=amount, idempotency_key=idempotency_key)
    # Raised once the refused screening is committed, so the refusal stays on record.
    if screening.verdict == Verdict.REFUSED:
        reason = f" ({screening.reason})" if screening.reason else ""
        raise TravellerBlocked(
            f"{screening.traveller_email} is on the blocked list{reason}: screening {screening.pk} "
            f"refused the booking of {screening.amount}."
        )
    return screening


def _screen(*, traveller_email: str, amount: Decimal | str, idempotency_key: str) -> Screening:
    with transaction.atomic():
        existing = Screening.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing

        try:
            validate_email(traveller_email)
        except ValidationError:
            raise InvalidScreening(f"{traveller_email!r} is not a valid traveller e-mail address.") from None
        value = _to_amount(amount)
        blocked = BlockedTraveller.objects.filter(email__iexact=traveller_email).first()
        verdict = Verdict.APPROVED if blocked is None else Verdict.REFUSED

        try:
            # A savepoint, so losing a race on the key leaves the outer transaction usable.
            with transaction.atomic():
                return Screening.objects.create(
                    traveller_email=traveller_email,
                    amount=value,
                    verdict=verdict,
                    reason=blocked.reason if blocked is not None else "",
                    idempotency_key=idempotency_key,
                )
        except IntegrityError:
            existing = Screening.objects.filter(idempotency_key=idempotency_key).first()
            if existing is None:
                raise
            return existing


def _to_amount(amount: Decimal | str) -> Decimal:
    try:
        value = Decimal(str(amount))
    except InvalidOperation:
        raise InvalidScreening(f"The amount {amount!r} is not a number.") from None
    if not value.is_finite() or value <= 0:
        raise InvalidScreening(f"The amount {amount!r} must be a number greater than zero.")
    if value != value.quantize(CENT) or value > MAX_AMOUNT:
        raise InvalidScreening(f"The amount {value} needs at most two decimal places and at most {MAX_AMOUNT}.")
    return value.quantize(CENT)
