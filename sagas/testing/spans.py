"""Spans a test can read from another process: each process appends its finished spans to a JSON-lines file of its
own in one directory (needs opentelemetry-sdk; sagas.testing.worker_main installs it in the workers it starts)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult


def span_record(span: ReadableSpan) -> dict[str, Any]:
    """What a test checks of a span: name, trace and span ids (hex), its parent's id, attributes, status, events."""
    context, parent = span.get_span_context(), span.parent
    assert context is not None
    return {
        "name": span.name,
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "parent_id": f"{parent.span_id:016x}" if parent is not None else None,
        "attributes": dict(span.attributes or {}),
        "status": span.status.status_code.name,
        "events": [event.name for event in span.events],
    }


class JsonLinesExporter(SpanExporter):
    """Appends each finished span as one JSON line to ``<directory>/spans-<pid>.jsonl``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with open(self.directory / f"spans-{os.getpid()}.jsonl", "a") as out:
            for span in spans:
                out.write(json.dumps(span_record(span), default=str) + "\n")
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def install(directory: Path) -> None:
    """Make this process's global tracer provider write its spans to ``directory`` as they end."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(directory)))
    trace.set_tracer_provider(provider)


def read(directory: Path) -> list[dict[str, Any]]:
    """Every span the processes wrote to ``directory`` so far."""
    files = sorted(directory.glob("spans-*.jsonl"))
    return [json.loads(line) for path in files for line in path.read_text().splitlines() if line.endswith("}")]
