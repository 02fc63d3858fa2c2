"""Read /metrics as Prometheus does, and compare two scrapes: counters are cumulative over the session."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

Series = tuple[str, frozenset[tuple[str, str]]]  # sample name and its labels


def series(name: str, **labels: str) -> Series:
    return name, frozenset(labels.items())


@dataclass(frozen=True)
class Scrape:
    """The ``sagas_*`` samples of one scrape."""

    text: str
    samples: dict[Series, float]

    def value(self, name: str, **labels: str) -> float:
        return self.samples.get(series(name, **labels), 0.0)

    def changes(self, before: Scrape, name: str) -> dict[frozenset[tuple[str, str]], float]:
        """The series of sample ``name`` that changed since ``before``, with how much, by their labels."""
        deltas = {}
        for (sample, labels), value in self.samples.items():
            delta = value - before.samples.get((sample, labels), 0.0)
            if sample == name and delta:
                deltas[labels] = delta
        return deltas


def scrape(client: Client, **request: str) -> Scrape:
    response = client.get("/metrics", **request)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    text = response.content.decode()
    samples = {
        series(sample.name, **sample.labels): sample.value
        for family in text_string_to_metric_families(text)
        if family.name.startswith("sagas_")
        for sample in family.samples
    }
    return Scrape(text, samples)


def publishes(callbacks: list[Callable[[], object]]) -> list[Callable[[], object]]:
    """The on-commit callbacks that publish tasks (``dispatch_on_commit``), without the metric counts that
    also wait for the commit."""
    return [callback for callback in callbacks if hasattr(callback, "canvas")]
