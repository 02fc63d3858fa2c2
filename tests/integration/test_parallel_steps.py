"""Sagas declared as a dependency graph, on a real worker with 2 processes: branches overlap, the join waits
for all of them by the rows, and a failed branch has every succeeded step undone once, in reverse order."""

from __future__ import annotations

from itertools import combinations

from sagas.models import SagaEvent, SagaRun, SagaStepRun
from sagas.states import EventType, RunStatus, StepStatus
from tests.testapp.models import calls_of
from tests.testapp.sagas import Diamond, FanOut
from tests.worker import WorkerProcess, wait_for_run

BRANCHES = ("north", "east", "west")


def steps_of(run: SagaRun) -> dict[str, SagaStepRun]:
    return {step.name: step for step in run.steps.all()}


def overlapping_pairs(steps: dict[str, SagaStepRun], names: tuple[str, ...]) -> list[tuple[str, str]]:
    """The pairs of steps whose recorded [started, finished] intervals intersect."""
    pairs = []
    for a, b in combinations(names, 2):
        first, second = steps[a], steps[b]
        assert None not in (first.started_at, first.finished_at, second.started_at, second.finished_at)
        if first.started_at < second.finished_at and second.started_at < first.finished_at:  # type: ignore[operator]
            pairs.append((a, b))
    return pairs


def events(run: SagaRun, type: str) -> list[SagaEvent]:
    return list(SagaEvent.objects.filter(run=run, type=type).order_by("seq"))


def test_branches_overlap_and_the_join_starts_after_the_last_of_them(worker: WorkerProcess) -> None:
    run = wait_for_run(Diamond.start({"branch_sleep": 1.0}), worker)

    assert run.status == RunStatus.COMPLETED
    steps = steps_of(run)
    assert all(step.status == StepStatus.SUCCEEDED and step.attempts == 1 for step in steps.values())
    # Two worker processes: at least two of the three branches ran at the same time.
    assert overlapping_pairs(steps, BRANCHES), {n: (steps[n].started_at, steps[n].finished_at) for n in BRANCHES}
    assert all(steps[branch].started_at >= steps["screen"].finished_at for branch in BRANCHES)
    assert steps["join"].started_at >= max(steps[branch].finished_at for branch in BRANCHES)
    assert steps["last"].started_at >= steps["join"].finished_at
    assert all(calls_of(run, name) == 1 for name in steps)
    # The join was started by exactly one of its dependencies' successes, however close they finished.
    started = events(run, EventType.STEP_STARTED)
    assert len(started) == len(steps)
    # Each step's first attempt is caused by the success of its last dependency.
    causes = {e.step: (e.causation.type, e.causation.step) for e in started if e.causation is not None}
    assert all(causes[branch] == (EventType.STEP_SUCCEEDED, "screen") for branch in BRANCHES)
    assert causes["join"][0] == EventType.STEP_SUCCEEDED
    assert causes["join"][1] in BRANCHES
    assert causes["last"] == (EventType.STEP_SUCCEEDED, "join")


def test_a_failed_branch_waits_for_its_siblings_then_undoes_every_succeeded_step_once(
    worker: WorkerProcess,
) -> None:
    run = wait_for_run(Diamond.start({"branch_sleep": 1.0, "fail_branch": "east"}), worker)

    assert run.status == RunStatus.COMPENSATED
    steps = steps_of(run)
    assert steps["east"].status == StepStatus.FAILED
    assert steps["join"].status == steps["last"].status == StepStatus.SKIPPED
    succeeded = [name for name in ("screen", "north", "west") if steps[name].attempts]
    for name in succeeded:
        assert steps[name].status == StepStatus.COMPENSATED, name
        assert calls_of(run, name, ":compensate") == 1, name
    assert calls_of(run, "east", ":compensate") == 0
    assert calls_of(run, "join") == calls_of(run, "join", ":compensate") == 0
    # Siblings in flight finished before the first compensation was scheduled.
    first_scheduled = events(run, EventType.COMPENSATION_SCHEDULED)[0]
    for name in succeeded:
        assert steps[name].finished_at <= first_scheduled.created_at, name
    # Reverse dependency order: the root is undone after every branch that depends on it.
    done = {e.step: e.created_at for e in events(run, EventType.COMPENSATION_SUCCEEDED)}
    started = {e.step: e.created_at for e in events(run, EventType.COMPENSATION_STARTED)}
    assert started["screen"] >= max(done[name] for name in succeeded if name != "screen")
    if "north" in done and "west" in done:  # north has the higher priority: undone first
        assert started["west"] >= done["north"]


def test_fan_out_steps_run_in_parallel_and_are_undone_in_parallel(worker: WorkerProcess) -> None:
    run = wait_for_run(FanOut.start({"undo_sleep": 0.5}), worker)

    assert run.status == RunStatus.COMPENSATED
    steps = steps_of(run)
    assert steps["refuse"].started_at >= max(steps["left"].finished_at, steps["right"].finished_at)
    assert {name: calls_of(run, name, ":compensate") for name in ("first", "urgent", "left", "right")} == {
        "first": 1,
        "urgent": 1,
        "left": 1,
        "right": 1,
    }
