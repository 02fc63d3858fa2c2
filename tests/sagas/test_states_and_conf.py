"""The state tables and the SAGAS settings namespace (pure logic)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from sagas.conf import DEFAULTS, sagas_settings
from sagas.states import (
    RUN_TRANSITIONS,
    STEP_TRANSITIONS,
    TERMINAL_RUN_STATES,
    RunStatus,
    StepStatus,
    run_sources,
)


def test_every_status_has_a_row_in_its_transition_table() -> None:
    assert set(RUN_TRANSITIONS) == set(RunStatus.values)
    assert set(STEP_TRANSITIONS) == set(StepStatus.values)
    for targets in (*RUN_TRANSITIONS.values(), *STEP_TRANSITIONS.values()):
        assert targets <= set(RunStatus.values) | set(StepStatus.values)


def test_terminal_runs_go_nowhere_and_failed_waits_for_a_person() -> None:
    for status in TERMINAL_RUN_STATES - {RunStatus.COMPLETED}:
        assert RUN_TRANSITIONS[status] == frozenset()
    # Only a child run leaves completed: its parent undoes it (sagas.services.compensation.undo_child).
    assert RUN_TRANSITIONS[RunStatus.COMPLETED] == {RunStatus.COMPENSATING}
    # Back to compensating (retried compensations), compensated (resolved), executing (forward, after a pivot).
    assert RUN_TRANSITIONS[RunStatus.FAILED] == {RunStatus.COMPENSATING, RunStatus.COMPENSATED, RunStatus.EXECUTING}
    assert run_sources(RunStatus.FAILED) == {RunStatus.EXECUTING, RunStatus.TIMEOUT, RunStatus.COMPENSATING}
    assert run_sources(RunStatus.COMPENSATING) == {
        RunStatus.EXECUTING,
        RunStatus.TIMEOUT,
        RunStatus.FAILED,
        RunStatus.COMPLETED,
    }


def test_unknown_sagas_setting_is_a_configuration_error(settings) -> None:
    settings.SAGAS = {"DEFAULT_RETRIES": {}}
    with pytest.raises(ImproperlyConfigured, match=r"Unknown SAGAS setting.*DEFAULT_RETRIES"):
        sagas_settings.QUEUE  # noqa: B018


def test_settings_fill_in_defaults_and_build_policies(settings) -> None:
    settings.SAGAS = {"DEFAULT_RETRY": {"max_attempts": 7}}
    grace = sagas_settings.TIME_LIMIT_GRACE
    assert grace == DEFAULTS["TIME_LIMIT_GRACE"]
    policy = sagas_settings.default_retry
    assert policy.max_attempts == 7
    assert policy.backoff == DEFAULTS["DEFAULT_RETRY"]["backoff"]
