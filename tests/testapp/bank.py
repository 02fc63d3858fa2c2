"""A small idempotent participant: postings to accounts, each applied once per idempotency key."""

from __future__ import annotations

from django.db import IntegrityError, transaction

from tests.testapp.models import Account, Entry


def post(*, account: str, amount: int, idempotency_key: str) -> Entry:
    """Apply ``amount`` to ``account`` once: a second call with the same key returns the first entry."""
    with transaction.atomic():
        existing = Entry.objects.filter(key=idempotency_key).first()
        if existing is not None:
            return existing
        target = Account.objects.select_for_update().get(name=account)
        try:
            with transaction.atomic():
                entry = Entry.objects.create(key=idempotency_key, account=target, amount=amount)
        except IntegrityError:  # the same key, posted at the same moment by a duplicate delivery
            return Entry.objects.get(key=idempotency_key)
        target.balance += amount
        target.save(update_fields=["balance"])
        return entry
