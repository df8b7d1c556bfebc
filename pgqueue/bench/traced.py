"""The benchmark's tasks with tracing on (W3O: ``--app pgqueue.bench.traced:app``).

Spans are sampled as ``OTEL_TRACES_SAMPLER`` says (the SDK reads it; unset: every
span) and go through the SDK's ``BatchSpanProcessor`` (as in production) to an
exporter that drops them: what is measured is pgqueue's tracing and the SDK's span
handling, not a collector's network.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..otel import instrument
from .tasks import app


def tracer_provider() -> Any:
    """An SDK tracer provider (every span sampled) whose exporter drops the spans."""
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class Drop(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Drop()))
    return provider


instrument(app, tracer_provider=tracer_provider())

__all__ = ["app"]
