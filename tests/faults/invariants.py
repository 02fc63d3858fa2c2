"""What must hold after every fault: effects at most once per key, money conserved, compensations once, in order."""

from __future__ import annotations

from collections import Counter

from sagas.models import SagaEvent, SagaRun
from sagas.states import EventType, RunStatus, StepStatus
from tests.testapp.models import Account, Entry
from tests.testapp.sagas import Transfer

UNDO_ORDER = ["credit", "debit"]  # Transfer's compensations, in the order they must run


def check_transfers(runs: list[SagaRun], balances_before: dict[str, int]) -> None:
    """Every invariant the fault suite promises, for settled Transfer runs."""
    # Each account's balance is what its entries say: an effect applied twice, or without its entry, shows here.
    for account in Account.objects.all():
        posted = sum(Entry.objects.filter(account=account).values_list("amount", flat=True))
        assert account.balance == balances_before[account.name] + posted, account
    # Effects at most once per idempotency key, and exactly the ones each run's outcome implies.
    keys = Counter(Entry.objects.values_list("key", flat=True))
    assert all(count == 1 for count in keys.values())
    for run in runs:
        assert run.status in (RunStatus.COMPLETED, RunStatus.COMPENSATED, RunStatus.FAILED), run.status
        steps = {s.name: s for s in run.steps.all()}
        for name in ("debit", "credit"):
            applied = f"{run.pk}:{name}" in keys
            undone = f"{run.pk}:{name}:compensate" in keys
            if run.status == RunStatus.COMPLETED:
                assert (applied, undone) == (True, False), (run.pk, name)
            if steps[name].status == StepStatus.COMPENSATED:
                assert undone, (run.pk, name)
            if undone:
                assert applied, (run.pk, name)  # nothing is undone that was not done
        _check_compensations(run)
    # Money is conserved, but for what a compensation that gave up could not put back.
    stranded = sum(
        run.payload["amount"]
        for run in runs
        if run.steps.filter(name="debit", status=StepStatus.COMPENSATION_FAILED).exists()
    )
    assert sum(Account.objects.values_list("balance", flat=True)) == sum(balances_before.values()) - stranded


def _check_compensations(run: SagaRun) -> None:
    """Each compensation succeeded at most once, and they ran in the required order."""
    undone = list(
        SagaEvent.objects.filter(run=run, type=EventType.COMPENSATION_SUCCEEDED)
        .order_by("seq")
        .values_list("step", flat=True)
    )
    assert len(undone) == len(set(undone)), undone
    expected = [name for name in UNDO_ORDER if name in undone]
    assert undone == expected, undone
    assert Transfer.name == run.saga_name
