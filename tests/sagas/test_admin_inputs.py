"""No input to the admin console is a 500: the numbers its pages read from the query, its changelists' filters and
selections, and the JSON of its signal and resolve forms, sent by a superuser."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

import hypothesis
import pytest
from django.db import transaction
from django.test import Client
from django.urls import reverse
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

import sagas
from sagas.models import SagaEvent, SagaOutbox, SagaRun
from sagas.numbers import whole_number
from sagas.states import EventType, RunStatus, StepStatus
from tests.factories import SagaRunFactory, forward_failed_run, waiting_run

pytestmark = pytest.mark.django_db

EXAMPLES = 30  # per page and parameter
THOUSANDS_OF_DIGITS = "9" * 5000  # int() refuses more than 4,300 digits with a ValueError

# What a person or a script might put where a number goes: numbers of every size and sign, floats, words in any
# script, NUL, nothing.
NOT_QUITE_NUMBERS = st.one_of(
    st.just(""),
    st.integers().map(str),
    st.floats().map(str),
    st.builds(lambda digit, count: digit * count, st.sampled_from("0123456789"), st.integers(1, 10_000)),
    st.builds(
        lambda head, count: head + "9" * count, st.sampled_from(["-", "+", " ", "0", "1e", "1_"]), st.integers(1, 5000)
    ),
    st.text(max_size=20),
    st.sampled_from(["\x00", "1\x00", "٣", "²", "NaN", "-0", "1.5", "1e3", "9999", "2147483648", "9" * 20]),
)


def each_example(test: Callable[..., None]) -> Callable[..., None]:
    """``test`` run on generated examples, the same on every run, each request in a savepoint rolled back after
    it: what one example wrote (a signal sent) is not there for the next."""

    @functools.wraps(test)
    def in_a_savepoint(**kwargs: Any) -> None:
        with transaction.atomic():
            test(**kwargs)
            transaction.set_rollback(True)

    return hypothesis.settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )(in_a_savepoint)


def assert_answered(response: Any) -> None:
    # The test client raises a view's exception itself; a 5xx answered without one is refused here.
    assert response.status_code < 500, f"{response.status_code} for {response.request}"


def messages(response: Any) -> list[str]:
    """The messages the page shows, as the view wrote them (the template capitalises them)."""
    return [str(message) for message in response.context["messages"]]


def run_with_events(count: int) -> SagaRun:
    run = SagaRunFactory(status=RunStatus.EXECUTING, lock_version=count)
    SagaEvent.objects.bulk_create(
        SagaEvent(run=run, seq=seq, type=EventType.STEP_STARTED, step="create_order", data={"attempt": seq})
        for seq in range(1, count + 1)
    )
    return run


@pytest.fixture
def urls() -> dict[str, str]:
    """The console's pages that read numbers from their query, by name: a run with a timeline of several pages."""
    run = run_with_events(5)
    return {
        "run page": reverse("admin:sagas_sagarun_change", args=[run.pk]),
        "live view": reverse("admin:sagas_sagarun_live", args=[run.pk]),
        "health": reverse("admin:sagas_health"),
    }


# "view", not "page": pytest-playwright gives a test with an argument named "page" a browser.
@pytest.mark.parametrize(
    ("view", "parameter"), [("run page", "events_before"), ("live view", "events_before"), ("health", "hours")]
)
def test_a_number_the_page_reads_from_its_query_is_never_a_500(
    admin_client: Client, settings: Any, urls: dict[str, str], view: str, parameter: str
) -> None:
    settings.SAGAS = {**settings.SAGAS, "ADMIN_TIMELINE_EVENTS": 2}

    @given(value=NOT_QUITE_NUMBERS)
    @each_example
    def ask(value: str) -> None:
        assert_answered(admin_client.get(urls[view], {parameter: value}))

    ask()


# Every changelist of the console, and the filters, date hierarchy, search, page and ordering its query may hold.
CHANGELISTS = {
    "sagarun": ["attention", "status__exact", "saga_name__exact", "version__exact", "created_at__year",
                "created_at__month", "created_at__day", "q", "p", "o", "all", "_facets", "e"],
    "sagaoutbox": ["published", "created_at__year", "created_at__month", "created_at__day", "q", "p", "o"],
    "sagareceipt": ["receiver__exact", "received_at__year", "received_at__month", "received_at__day", "q", "p"],
    "sagadefinition": ["name__exact", "q", "p", "o"],
}  # fmt: skip


@pytest.mark.parametrize("model", CHANGELISTS)
def test_a_changelist_query_is_never_a_500(admin_client: Client, model: str) -> None:
    SagaRunFactory(status=RunStatus.FAILED)
    url = reverse(f"admin:sagas_{model}_changelist")
    names = st.one_of(st.sampled_from(CHANGELISTS[model]), st.text(min_size=1, max_size=20))

    @given(query=st.dictionaries(names, NOT_QUITE_NUMBERS, min_size=1, max_size=3))
    @each_example
    def ask(query: dict[str, str]) -> None:
        assert_answered(admin_client.get(url, query))

    ask()


def test_the_run_page_shows_the_latest_events_with_a_message_for_a_number_of_thousands_of_digits(
    admin_client: Client, settings: Any
) -> None:
    settings.SAGAS = {**settings.SAGAS, "ADMIN_TIMELINE_EVENTS": 2}
    run = run_with_events(5)
    url = reverse("admin:sagas_sagarun_change", args=[run.pk])

    response = admin_client.get(url, {"events_before": THOUSANDS_OF_DIGITS})

    assert response.status_code == 200
    page = response.content.decode()
    assert messages(response) == [
        "?events_before= must be an event's number, from 1 to 2147483647; showing the latest events."
    ]
    assert "Events 4 to 5 of 5." in page
    assert "Events 2 to 3 of 5." in admin_client.get(url, {"events_before": "4"}).content.decode()


@pytest.mark.parametrize("value", [THOUSANDS_OF_DIGITS, "0", "-1", "2147483648", "4.0", "٣"])
def test_the_live_view_polls_the_latest_events_for_a_value_that_is_not_an_events_number(
    admin_client: Client, settings: Any, value: str
) -> None:
    settings.SAGAS = {**settings.SAGAS, "ADMIN_TIMELINE_EVENTS": 2}
    run = run_with_events(5)
    url = reverse("admin:sagas_sagarun_live", args=[run.pk])

    response = admin_client.get(url, {"events_before": value})

    assert response.status_code == 200
    assert response.json()["parts"] == admin_client.get(url).json()["parts"]
    # Quietly: the person's next page shows no warning about a poll.
    assert messages(admin_client.get(reverse("admin:sagas_sagarun_change", args=[run.pk]))) == []


@pytest.mark.parametrize("hours", [THOUSANDS_OF_DIGITS, "0.5", "8785", "+6", " 6"])
def test_the_health_page_shows_the_default_window_with_a_message_for_hours_that_are_not_whole(
    admin_client: Client, hours: str
) -> None:
    response = admin_client.get(reverse("admin:sagas_health"), {"hours": hours})
    assert response.status_code == 200
    assert messages(response) == [
        "hours must be a number above 0 and at most 8784, in whole hours; showing the default window."
    ]
    assert "Runs started in the last 24 h" in response.content.decode()


def test_the_health_page_takes_a_window_of_a_year_in_hours(admin_client: Client) -> None:
    response = admin_client.get(reverse("admin:sagas_health"), {"hours": "8784"})
    assert "Runs started in the last 8784 h" in response.content.decode()
    assert messages(response) == []


@pytest.mark.parametrize(
    ("query", "why"),
    [
        ({"status__exact": "failed\x00"}, "PostgreSQL refuses NUL in text"),
        ({"created_at__year": "9" * 20}, "datetime() raises OverflowError, which Django does not catch"),
        ({"created_at__year": "9999"}, "the end of the year 9999 is out of datetime's range"),
        ({"created_at__year": "9999", "created_at__month": "12"}, "so is the end of its December"),
        ({"created_at__year": "2026", "created_at__month": THOUSANDS_OF_DIGITS}, "more digits than int() reads"),
    ],
)
def test_a_changelist_filter_the_database_cannot_take_is_dropped_as_django_drops_a_bad_one(
    admin_client: Client, query: dict[str, str], why: str
) -> None:
    response = admin_client.get(reverse("admin:sagas_sagarun_changelist"), query)
    assert (response.status_code, response["Location"]) == (302, "/admin/sagas/sagarun/?e=1"), why


def test_a_date_in_datetimes_range_still_filters_the_list(admin_client: Client) -> None:
    run = SagaRunFactory()
    url = reverse("admin:sagas_sagarun_changelist")
    this_year = {"created_at__year": str(run.created_at.year), "created_at__month": str(run.created_at.month)}
    assert str(run.pk)[:8] in admin_client.get(url, this_year).content.decode()
    assert str(run.pk)[:8] not in admin_client.get(url, {"created_at__year": "9998"}).content.decode()


@pytest.mark.parametrize(("model", "action"), [("sagarun", "retry_runs"), ("sagaoutbox", "relay_now")])
def test_a_selection_that_is_not_of_ids_is_refused_with_a_message(
    admin_client: Client, model: str, action: str
) -> None:
    run = SagaRunFactory(status=RunStatus.FAILED)
    url = reverse(f"admin:sagas_{model}_changelist")

    response = admin_client.post(url, {"action": action, "_selected_action": [str(run.pk), "1e999"]}, follow=True)

    assert response.status_code == 200
    what = SagaRun._meta.verbose_name if model == "sagarun" else SagaOutbox._meta.verbose_name
    assert f"Nothing was done: the selection holds a value that is not the id of a {what}." in response.content.decode()
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED


# JSON a form must refuse with a message, not a 500 (Python cannot read it) or a write that fails (jsonb refuses it).
REFUSED_JSON = [
    pytest.param("[" * 100_000, "The {what} is nested deeper than 100 levels", id="too-deep-to-parse"),
    pytest.param('{"a": ' + "[" * 101 + "]" * 101 + "}", "The {what} is nested deeper than 100 levels", id="deep"),
    pytest.param('{"amount": ' + THOUSANDS_OF_DIGITS + "}", "A number in the {what} has more than 4300", id="digits"),
    pytest.param('{"amount": 1e999}', "The {what} holds NaN, Infinity or a number beyond", id="infinite"),
    pytest.param('{"amount": NaN}', "The {what} holds NaN, Infinity or a number beyond", id="nan"),
    pytest.param('{"note": "a\\u0000b"}', "may not contain NUL characters", id="nul"),
    pytest.param('{"note": "\\ud800"}', "holds an unpaired surrogate", id="surrogate"),
]


@pytest.mark.parametrize(("text", "error"), REFUSED_JSON)
def test_the_signal_form_refuses_json_a_run_cannot_read_or_store_with_a_form_error(
    admin_client: Client, text: str, error: str
) -> None:
    run = waiting_run()
    url = reverse("admin:sagas_sagarun_signal", args=[run.pk])
    response = admin_client.post(url, {"name": "approved", "data": text})
    assert response.status_code == 200
    assert any(error.format(what="data") in message for message in response.context["form"].errors["data"])
    assert run.steps.get(name="approved").status == StepStatus.WAITING


@pytest.mark.parametrize(("text", "error"), REFUSED_JSON)
def test_the_resolve_form_refuses_json_a_run_cannot_read_or_store_with_a_form_error(
    admin_client: Client, text: str, error: str
) -> None:
    run = forward_failed_run()
    url = reverse("admin:sagas_sagarun_resolve", args=[run.pk])
    response = admin_client.post(url, {"step": "ship", "reason": "couriered", "output": text})
    assert response.status_code == 200
    assert any(error.format(what="output") in message for message in response.context["form"].errors["output"])
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED


def test_a_refused_form_shows_the_json_again_as_it_was_typed(admin_client: Client) -> None:
    run = waiting_run()
    url = reverse("admin:sagas_sagarun_signal", args=[run.pk])
    page = admin_client.post(url, {"name": "approved", "data": '{"note": "\\ud800"}'}).content.decode()
    assert "{&quot;note&quot;: &quot;\\ud800&quot;}</textarea>" in page


@pytest.mark.parametrize(
    ("action", "run_of", "form", "field"),
    [
        ("signal", waiting_run, {"name": "approved", "data": '{"approved_by": "ann"}'}, "data"),
        (
            "resolve",
            forward_failed_run,
            {"step": "ship", "reason": "couriered", "output": '{"tracking": "T-5"}'},
            "output",
        ),
        ("resolve", forward_failed_run, {"step": "ship", "reason": "couriered", "output": "{}"}, "reason"),
    ],
)
def test_a_value_the_service_refuses_is_the_error_of_the_field_that_held_it(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch, action: str, run_of: Any, form: dict[str, str], field: str
) -> None:
    refusal = "It is 2,000,000 bytes of JSON, over the limit of 1,000,000 (SAGAS['MAX_PAYLOAD_BYTES'])."

    def refuse(*args: Any, **kwargs: Any) -> SagaRun:
        raise sagas.InvalidPayload(refusal, field=field)

    monkeypatch.setattr(sagas, action, refuse)
    run = run_of()
    response = admin_client.post(reverse(f"admin:sagas_sagarun_{action}", args=[run.pk]), form)
    assert response.status_code == 200
    assert response.context["form"].errors == {field: [refusal]}


def test_a_value_the_service_refuses_that_the_form_has_no_field_for_is_the_forms_error(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> SagaRun:
        raise sagas.InvalidPayload("The actor is not a name.", field="actor")

    monkeypatch.setattr(sagas, "signal", refuse)
    run = waiting_run()
    response = admin_client.post(reverse("admin:sagas_sagarun_signal", args=[run.pk]), {"name": "approved"})
    assert response.status_code == 200
    assert response.context["form"].errors == {"__all__": ["The actor is not a name."]}


JSON_TEXT = st.one_of(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    ).map(json.dumps),
    st.builds(lambda depth: "[" * depth + "]" * depth, st.integers(90, 5000)),
    st.builds(lambda count: '{"a": ' + "9" * count + "}", st.integers(4000, 6000)),
    st.text(max_size=30),
)


def test_the_signal_and_resolve_forms_never_answer_a_500(admin_client: Client) -> None:
    waiting, failed = waiting_run(), forward_failed_run()
    signal = reverse("admin:sagas_sagarun_signal", args=[waiting.pk])
    resolve = reverse("admin:sagas_sagarun_resolve", args=[failed.pk])

    @given(text=JSON_TEXT, reason=st.text(max_size=20))
    @each_example
    def send(text: str, reason: str) -> None:
        assert_answered(admin_client.post(signal, {"name": "approved", "data": text, "reason": reason}))
        assert_answered(admin_client.post(resolve, {"step": "ship", "output": text, "reason": reason}))

    send()


@pytest.mark.parametrize(("text", "number"), [("42", 42), ("0042", 42), ("500", 500), ("0" * 5000 + "7", 7)])
def test_whole_number_reads_ascii_digits_in_range_leading_zeros_aside(text: str, number: int) -> None:
    assert whole_number(text, low=1, high=500) == number


@pytest.mark.parametrize("text", ["", "0", "501", "-1", "+1", " 1", "1_0", "1.0", "٣", "²", THOUSANDS_OF_DIGITS])
def test_whole_number_refuses_anything_else_naming_the_range(text: str) -> None:
    with pytest.raises(ValueError, match=r"^Ask for a whole number of runs from 1 to 500\.$"):
        whole_number(text, low=1, high=500, of="runs")
