"""RetryPolicy: which failures retry and how long each retry waits (pure logic)."""

from __future__ import annotations

import random

import pytest
from celery.exceptions import SoftTimeLimitExceeded

import sagas
from sagas.failures import NO_SECRETS, Failure
from sagas.retry import FailureClass, classify


def test_delays_grow_by_the_multiplier_up_to_backoff_max_without_jitter() -> None:
    policy = sagas.RetryPolicy(max_attempts=6, backoff=1.0, multiplier=2.0, backoff_max=5.0, jitter=False)
    assert [policy.delay(attempt) for attempt in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_jitter_keeps_each_delay_between_half_and_all_of_the_backoff() -> None:
    policy = sagas.RetryPolicy(backoff=2.0, multiplier=3.0, backoff_max=100.0, jitter=True)
    rng = random.Random(7)
    for attempt, full in [(1, 2.0), (2, 6.0), (3, 18.0)]:
        delays = {policy.delay(attempt, rng=rng) for _ in range(50)}
        assert all(full / 2 <= delay <= full for delay in delays)
        assert len(delays) > 1  # jitter spreads retries


def test_rate_limited_waits_at_least_retry_after() -> None:
    policy = sagas.RetryPolicy(backoff=0.5, jitter=False)
    assert policy.delay(1, sagas.RateLimited("slow down", retry_after=7)) == 7.0
    assert policy.delay(1, sagas.RateLimited("slow down", retry_after=0.1)) == 0.5


@pytest.mark.parametrize(
    ("exc", "failure"),
    [
        (sagas.StepFailed("card declined"), FailureClass.INVALID_REQUEST),
        (sagas.CircuitOpen("payments", retry_after=3), FailureClass.CIRCUIT_OPEN),
        (sagas.TransientError("503"), FailureClass.TRANSIENT),
        (sagas.RateLimited("429", retry_after=1), FailureClass.RATE_LIMITED),
        (SoftTimeLimitExceeded(), FailureClass.TIMEOUT),
        (KeyError("x"), FailureClass.UNKNOWN),
    ],
)
def test_failures_are_classified_by_type(exc: BaseException, failure: FailureClass) -> None:
    assert classify(exc) is failure


def test_invalid_requests_never_retry() -> None:
    assert not sagas.RetryPolicy(max_attempts=10).should_retry(sagas.StepFailed("no"), attempt=1)


def test_transient_failures_retry_until_max_attempts() -> None:
    policy = sagas.RetryPolicy(max_attempts=3)
    assert [policy.should_retry(sagas.TransientError("x"), attempt=n) for n in (1, 2, 3)] == [True, True, False]


def test_other_exceptions_retry_only_when_listed_in_retry_on() -> None:
    policy = sagas.RetryPolicy(max_attempts=3, retry_on=(ConnectionError,))
    assert policy.should_retry(ConnectionResetError("reset"), attempt=1)
    assert not policy.should_retry(ValueError("bug"), attempt=1)
    assert policy.should_retry(sagas.TransientError("503"), attempt=1)  # transient always retries


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"max_attempts": 0}, "max_attempts must be an int >= 1"),
        ({"backoff": -1}, "backoff must be a number >= 0"),
        ({"multiplier": 0.5}, "multiplier must be a number >= 1"),
        ({"retry_on": ("ValueError",)}, "retry_on takes exception classes"),
        ({"overrides": {"flaky": {"max_attempts": 2}}}, "unknown failure class 'flaky'"),
        ({"overrides": {"invalid_request": {"max_attempts": 2}}}, "invalid_request is never retried"),
        ({"overrides": {"timeout": {"attempts": 2}}}, "overrides['timeout'] takes max_attempts"),
        ({"overrides": {"timeout": {"max_attempts": 0}}}, "overrides['timeout']: max_attempts must be"),
    ],
)
def test_policy_problems_are_reported_in_words(kwargs: dict, problem: str) -> None:
    problems = sagas.RetryPolicy(**kwargs).problems()
    assert any(problem in p for p in problems), problems


def test_overrides_change_the_budget_and_backoff_of_one_class() -> None:
    policy = sagas.RetryPolicy(
        max_attempts=5,
        backoff=1.0,
        jitter=False,
        overrides={"timeout": {"max_attempts": 2}, "transient": {"backoff": 10.0, "backoff_max": 10.0}},
    )
    assert policy.problems() == []
    timeout = SoftTimeLimitExceeded()
    assert [policy.should_retry(timeout, attempt=n) for n in (1, 2)] == [True, False]
    assert [policy.should_retry(ValueError("x"), attempt=n) for n in (1, 4, 5)] == [True, True, False]
    assert policy.delay(1, sagas.TransientError("x")) == 10.0
    assert policy.delay(1, ValueError("x")) == 1.0


def test_an_open_circuit_waits_out_its_recovery_and_counts_against_the_budget() -> None:
    policy = sagas.RetryPolicy(max_attempts=3, backoff=0.1, jitter=False)
    open_circuit = sagas.CircuitOpen("payments", retry_after=12.5)
    assert policy.delay(1, open_circuit) == 12.5
    assert policy.should_retry(open_circuit, attempt=2)
    assert not policy.should_retry(open_circuit, attempt=3)


def test_bounds_enclose_every_jittered_delay() -> None:
    policy = sagas.RetryPolicy(backoff=0.4, multiplier=3.0, backoff_max=5.0, jitter=True)
    for attempt in (1, 2, 3, 4):
        low, high = policy.bounds(attempt)
        assert all(low <= policy.delay(attempt) <= high for _ in range(30))
    assert policy.bounds(1, sagas.RateLimited("x", retry_after=2)) == (2.0, 2.0)


def test_a_failure_keeps_type_message_class_code_and_traceback() -> None:
    try:
        raise sagas.StepFailed("Card declined", code="card_declined")
    except sagas.StepFailed as exc:
        error = Failure.from_exception(exc, attempt=2, secrets=NO_SECRETS).to_json()
    assert error["type"] == "sagas.exceptions.StepFailed"
    assert (error["message"], error["class"], error["code"], error["attempt"]) == (
        "Card declined",
        "invalid_request",
        "card_declined",
        2,
    )
    assert "raise sagas.StepFailed" in error["traceback"]


def test_policy_spec_names_exception_classes() -> None:
    spec = sagas.RetryPolicy(retry_on=(ConnectionError,)).to_spec()
    assert spec["retry_on"] == ["builtins.ConnectionError"]


def test_what_each_failure_tells_the_breaker() -> None:
    from sagas.breakers import outcome_of

    assert outcome_of(sagas.TransientError("503")) == "failure"
    assert outcome_of(SoftTimeLimitExceeded()) == "failure"
    assert outcome_of(KeyError("bug")) == "failure"
    assert outcome_of(sagas.StepFailed("declined")) == "success"  # it answered
    assert outcome_of(sagas.RateLimited("slow", retry_after=1)) == "neutral"
    assert outcome_of(sagas.TransientError("this bank is offline", service_fault=False)) == "neutral"
