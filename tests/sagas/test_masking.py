"""Masking in free text: the values under masked keys, found in payloads and outputs, blotted out of error text."""

from __future__ import annotations

import pytest

import sagas
from sagas.exceptions import MaskedFailure
from sagas.failures import Failure
from sagas.masking import MASK, scrub, scrubbed_exception, secret_values

PAYLOAD = {
    "customer": "ada",
    "card_number": "4111111111111111",
    "billing": {"api_key": "key-abc-123", "city": "Delft"},
    "cards": [{"cvv": 737}],
    "password": {"old": "hunter22", "new": "correct-horse"},
    "pin_token": "12",  # too short to look for in text
}


def test_secret_values_are_every_value_under_a_masked_key_longest_first() -> None:
    assert secret_values(PAYLOAD, {"charge": {"auth_token": "tok_live_999"}}) == [
        "4111111111111111",
        "correct-horse",
        "tok_live_999",
        "key-abc-123",
        "hunter22",
    ]
    assert secret_values({"customer": "ada", "amount": "10.00"}) == []


def test_a_masked_number_is_a_secret_as_text() -> None:
    assert secret_values({"card": {"cvv": 7371}}) == ["7371"]


def test_scrub_replaces_every_occurrence() -> None:
    text = "card 4111111111111111 refused; retry card 4111111111111111 with key-abc-123 in Delft"
    assert scrub(text, secret_values(PAYLOAD)) == f"card {MASK} refused; retry card {MASK} with {MASK} in Delft"


def test_a_failure_record_is_masked_in_message_and_traceback() -> None:
    try:
        raise ValueError("declined 4111111111111111")
    except ValueError as exc:
        error = Failure.from_exception(exc, attempt=1, secrets=secret_values(PAYLOAD)).to_json()
    assert error["message"] == f"declined {MASK}"
    assert "4111111111111111" not in error["traceback"]
    assert error["class"] == "unknown"


def test_an_exception_without_a_secret_is_handed_on_as_it_is() -> None:
    exc = sagas.TransientError("gateway timeout")
    assert scrubbed_exception(exc, secret_values(PAYLOAD)) is exc


def test_an_exception_with_a_secret_is_copied_masked_keeping_its_class_and_code() -> None:
    exc = sagas.StepFailed("card 4111111111111111 declined", code="declined")
    shown = scrubbed_exception(exc, secret_values(PAYLOAD))
    assert type(shown) is sagas.StepFailed
    assert str(shown) == f"card {MASK} declined"
    assert shown.code == "declined"
    assert shown.__traceback__ is None


def test_an_exception_that_repeats_the_secret_in_its_own_str_becomes_a_masked_failure() -> None:
    class Stubborn(Exception):
        def __str__(self) -> str:
            return "always 4111111111111111"

    shown = scrubbed_exception(Stubborn("x"), secret_values(PAYLOAD))
    assert isinstance(shown, MaskedFailure)
    assert "4111111111111111" not in str(shown)
    assert "Stubborn" in str(shown)


@pytest.mark.parametrize("payload", [{}, {"customer": "ada"}])
def test_nothing_to_mask_changes_nothing(payload: dict[str, str]) -> None:
    exc = ValueError("gateway said no to ada")
    assert Failure.from_exception(exc, attempt=1, secrets=secret_values(payload)).message == "gateway said no to ada"
