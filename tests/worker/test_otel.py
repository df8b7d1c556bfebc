"""OpenTelemetry (pgqueue.otel) with the SDK's in-memory exporter and a real worker in
this process: the producer span at enqueue, the trace context stored with the job, a
consumer span per attempt continuing the trace, semconv attributes, log correlation."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from pgqueue import App, ConfigurationError, JobSpec, RetryPolicy
from pgqueue.otel import Instrumentation, instrument
from tests.helpers import wait_until
from tests.worker.inproc import running

Conn = psycopg.Connection[Any]
log = logging.getLogger("tests.otel.handler")


@pytest.fixture
def traced(app: App) -> Iterator[tuple[TracerProvider, InMemorySpanExporter, Instrumentation]]:
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    inst = instrument(app, tracer_provider=provider)
    yield provider, exporter, inst
    inst.uninstrument()
    provider.shutdown()


def by_kind(spans: tuple[ReadableSpan, ...], kind: SpanKind) -> list[ReadableSpan]:
    return [s for s in spans if s.kind == kind]


def test_one_trace_from_enqueue_to_every_attempt(
    app: App,
    conn: Conn,
    schema: str,
    traced: tuple[TracerProvider, InMemorySpanExporter, Instrumentation],
    caplog: pytest.LogCaptureFixture,
) -> None:
    provider, exporter, _ = traced
    tracer = provider.get_tracer("tests")

    @app.task(name="work", queue="tq")
    def work(n: int) -> int:
        with tracer.start_as_current_span("inner"):
            log.info("inside the handler %d", n)
        return n

    @app.task(name="awork", queue="tq")
    async def awork() -> str:
        await asyncio.sleep(0)
        log.info("inside the async handler")
        return "a"

    @app.task(name="flaky", queue="tq", max_attempts=2, retry=RetryPolicy(base=0.05, jitter=0))
    def flaky() -> None:
        raise RuntimeError("broken")

    with tracer.start_as_current_span("request") as request:
        one = work.defer(1)
    two = awork.defer()
    batch = app.enqueue_many([JobSpec("flaky"), JobSpec("work", (2,))])
    headers = conn.execute(
        f'SELECT headers FROM "{schema}".jobs WHERE id = %s', (int(one),)
    ).fetchone()
    assert headers is not None and headers[0]["traceparent"].startswith("00-")

    caplog.set_level(logging.INFO)
    with running(app, queues=["tq"], poll_interval=0.05):
        assert one.result(timeout=15) == 1 and two.result(timeout=15) == "a"
        wait_until(
            lambda: len(by_kind(exporter.get_finished_spans(), SpanKind.CONSUMER)) == 5,
            timeout=20,
            what="5 consumer spans (flaky ran twice)",
        )
    spans = exporter.get_finished_spans()
    producers = by_kind(spans, SpanKind.PRODUCER)
    consumers = by_kind(spans, SpanKind.CONSUMER)
    assert len(producers) == 3  # work.defer, awork.defer, enqueue_many

    def producer_of(job_id: int) -> ReadableSpan:
        for p in producers:
            if p.attributes and p.attributes.get("messaging.message.id") == str(job_id):
                return p
        return next(p for p in producers if p.attributes.get("messaging.batch.message_count"))  # type: ignore[union-attr]

    for c in consumers:
        attrs = dict(c.attributes or {})
        job_id = int(attrs["messaging.message.id"])
        parent = producer_of(job_id)
        assert c.context.trace_id == parent.context.trace_id
        assert c.parent is not None and c.parent.span_id == parent.context.span_id
        assert attrs["messaging.system"] == "pgqueue"
        assert attrs["messaging.destination.name"] == "tq"
        assert attrs["messaging.operation.type"] == "process"
        assert c.name == "process tq"
    p_one = producer_of(int(one))
    assert p_one.parent is not None and p_one.parent.span_id == request.get_span_context().span_id
    assert dict(p_one.attributes or {})["messaging.destination.name"] == "tq"
    assert p_one.name == "send tq"
    p_batch = producer_of(int(batch[0]))
    assert dict(p_batch.attributes or {})["messaging.batch.message_count"] == 2

    flaky_runs = sorted(
        (dict(c.attributes or {})["pgqueue.attempt"], c.status.status_code)
        for c in consumers
        if dict(c.attributes or {})["pgqueue.task"] == "flaky"
    )
    assert flaky_runs == [(1, StatusCode.ERROR), (2, StatusCode.ERROR)]

    # the handler's own span is a child of its consumer span
    inner = next(s for s in spans if s.name == "inner")
    consumer_one = next(
        c for c in consumers if dict(c.attributes or {})["messaging.message.id"] == str(int(one))
    )
    assert inner.parent is not None and inner.parent.span_id == consumer_one.context.span_id

    # log records carry the ids: the handler's own, and pgqueue's per-job lines
    def ids(span: ReadableSpan) -> tuple[str, str]:
        return f"{span.context.trace_id:032x}", f"{span.context.span_id:016x}"

    handler_line = next(r for r in caplog.records if r.getMessage() == "inside the handler 1")
    assert (handler_line.trace_id, handler_line.span_id) == ids(  # type: ignore[attr-defined]
        next(s for s in spans if s.name == "inner")
    )
    async_line = next(r for r in caplog.records if r.getMessage() == "inside the async handler")
    consumer_two = next(
        c for c in consumers if dict(c.attributes or {})["messaging.message.id"] == str(int(two))
    )
    assert (async_line.trace_id, async_line.span_id) == ids(consumer_two)  # type: ignore[attr-defined]
    succeeded = next(
        r
        for r in caplog.records
        if getattr(r, "event", None) == "succeeded" and getattr(r, "job_id", None) == int(one)
    )
    assert (succeeded.trace_id, succeeded.span_id) == ids(consumer_one)  # type: ignore[attr-defined]
    failed = next(r for r in caplog.records if getattr(r, "event", None) == "failed")
    assert failed.trace_id == f"{p_batch.context.trace_id:032x}"  # type: ignore[attr-defined]


def test_a_job_enqueued_without_a_trace_starts_one(
    app: App, traced: tuple[TracerProvider, InMemorySpanExporter, Instrumentation]
) -> None:
    _, exporter, inst = traced
    inst.uninstrument()  # enqueue untraced ...

    @app.task(name="plain")
    def plain() -> None: ...

    job = plain.defer()
    app.hooks.run.append(inst.consumer)  # ... and trace only the run
    with running(app):
        job.result(timeout=15)
        wait_until(lambda: exporter.get_finished_spans(), what="the consumer span")
    (span,) = exporter.get_finished_spans()
    assert span.kind == SpanKind.CONSUMER and span.parent is None


def test_instrumenting_twice_is_refused(
    app: App, traced: tuple[TracerProvider, InMemorySpanExporter, Instrumentation]
) -> None:
    with pytest.raises(ConfigurationError, match="instrumented already"):
        instrument(app)
