"""OpenTelemetry tracing (``pgqueue[otel]``): one trace from the enqueue to every run.

``instrument(app)`` registers two hooks (pgqueue/hooks.py) on ``app``:

- around each enqueue call, a PRODUCER span ``send <queue>``, whose W3C trace context
  (``traceparent``, ``tracestate``, with the global propagator: also ``baggage``) is
  stored with the job (column ``headers``);
- around each run of a handler, a CONSUMER span ``process <queue>`` that continues
  that trace (its parent is the producer span; a job enqueued without one starts a
  trace of its own). It is the current span inside the handler, so the handler's own
  spans (HTTP calls, SQL) are its children.

Attributes follow the messaging semantic conventions: ``messaging.system`` =
``pgqueue``, ``messaging.destination.name`` = the queue, ``messaging.operation.type``
(``send``/``process``), ``messaging.message.id`` = the job id (the producer span of a
batch has ``messaging.batch.message_count`` instead), plus ``pgqueue.task`` and
``pgqueue.attempt``. A handler's exception is recorded on its span with status ERROR;
``Retry``, ``Snooze`` and ``Cancel`` are not errors (``pgqueue.outcome`` says which).

Log records made while a span is current carry ``trace_id`` and ``span_id`` (hex), so
``--log-format json`` lines of a handler join its trace; pgqueue's own per-job lines
(started, succeeded, failed) carry the ids of the job's consumer span.

Spans go wherever the tracer provider sends them: configure the OpenTelemetry SDK
(exporter, sampler) in the module your worker loads with ``--app``, before or after
``instrument``. Without an SDK the API's no-op tracer makes every span free.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .errors import Cancel, ConfigurationError, Retry, Snooze
from .hooks import EnqueueInfo

if TYPE_CHECKING:
    from .app import App
    from .worker.runner import Claimed

SYSTEM = "pgqueue"
_CONTROL = (Retry, Snooze, Cancel)


def _api() -> Any:
    try:
        from opentelemetry import trace
    except ImportError:
        raise ConfigurationError(
            "tracing needs OpenTelemetry: pip install 'pgqueue[otel]'"
        ) from None
    return trace


class Instrumentation:
    """The hooks ``instrument`` registered; ``uninstrument`` removes them."""

    def __init__(self, app: App, tracer_provider: Any = None, log_correlation: bool = True):
        trace = _api()
        from opentelemetry import context, propagate
        from opentelemetry.trace import SpanKind, Status, StatusCode

        self.app = app
        self._trace = trace
        self._context = context
        self._propagate = propagate
        self._producer_kind = SpanKind.PRODUCER
        self._consumer_kind = SpanKind.CONSUMER
        self._status = Status
        self._error = StatusCode.ERROR
        self.tracer = trace.get_tracer("pgqueue", tracer_provider=tracer_provider)
        # headers text -> the extracted parent context. The jobs of one enqueue call share
        # their headers, so a drain of a batch parses them once, not once per job (the
        # parse and the propagators' regexes cost more than the span). Contexts are
        # immutable; the cache is dropped whole when it fills.
        self._parents: dict[str, Any] = {}
        app.hooks.enqueue.append(self.producer)
        app.hooks.run.append(self.consumer)
        if log_correlation:
            _install_log_correlation()

    def uninstrument(self) -> None:
        hooks = self.app.hooks
        if self.producer in hooks.enqueue:
            hooks.enqueue.remove(self.producer)
        if self.consumer in hooks.run:
            hooks.run.remove(self.consumer)

    @contextlib.contextmanager
    def producer(self, info: EnqueueInfo) -> Iterator[None]:
        """The PRODUCER span around one enqueue call (an ``around_enqueue`` hook)."""
        attributes: dict[str, Any] = {
            "messaging.system": SYSTEM,
            "messaging.destination.name": info.queue,
            "messaging.operation.type": "send",
            "pgqueue.task": info.task,
        }
        if info.count != 1:
            attributes["messaging.batch.message_count"] = info.count
        with self.tracer.start_as_current_span(
            f"send {info.queue}", kind=self._producer_kind, attributes=attributes
        ) as span:
            self._propagate.inject(info.headers)
            yield
            if span.is_recording() and info.count == 1 and info.job_ids:
                span.set_attribute("messaging.message.id", str(info.job_ids[0]))

    def consumer(self, job: Claimed) -> _Consume:
        """The CONSUMER span around one run (an ``around_run`` hook)."""
        return _Consume(self, job)


class _Consume:
    """A context manager (a class: it runs for every job) around one run's span."""

    __slots__ = ("job", "otel", "span", "token")

    def __init__(self, otel: Instrumentation, job: Claimed) -> None:
        self.otel = otel
        self.job = job

    def __enter__(self) -> Any:
        otel, job = self.otel, self.job
        parent = None
        if job.headers:
            parents = otel._parents
            parent = parents.get(job.headers)
            if parent is None:
                if len(parents) >= 1024:
                    parents.clear()
                parent = parents[job.headers] = otel._propagate.extract(job.header_map())
        span = otel.tracer.start_span(
            f"process {job.queue}",
            context=parent,
            kind=otel._consumer_kind,
            attributes={
                "messaging.system": SYSTEM,
                "messaging.destination.name": job.queue,
                "messaging.operation.type": "process",
                "messaging.message.id": str(job.id),
                "pgqueue.task": job.task,
                "pgqueue.attempt": job.attempt,
            },
        )
        self.span = span
        self.token = otel._context.attach(otel._trace.set_span_in_context(span))
        ctx = span.get_span_context()
        if ctx.is_valid:
            job.trace = (f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}")
        return span

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        span = self.span
        try:
            if exc is not None and span.is_recording():
                if isinstance(exc, _CONTROL):
                    span.set_attribute("pgqueue.outcome", type(exc).__name__.lower())
                else:
                    span.record_exception(exc)
                    span.set_status(self.otel._status(self.otel._error, f"{type(exc).__name__}"))
        finally:
            self.otel._context.detach(self.token)
            span.end()


def instrument(
    app: App, *, tracer_provider: Any = None, log_correlation: bool = True
) -> Instrumentation:
    """Trace ``app``'s enqueues and runs (see the module). ``tracer_provider``: the
    global one by default. ``log_correlation``: log records made inside a span get
    ``trace_id``/``span_id`` (a log record factory, installed once per process).
    Raises ``ConfigurationError`` if OpenTelemetry is not installed or ``app`` is
    instrumented already (every span would be made twice)."""
    if any(isinstance(getattr(h, "__self__", None), Instrumentation) for h in app.hooks.run):
        raise ConfigurationError("this App is instrumented already (pgqueue.otel.instrument)")
    return Instrumentation(app, tracer_provider, log_correlation)


_installed = False


def _install_log_correlation() -> None:
    """Wrap the log record factory: a record made while a valid span is current gets its
    ``trace_id`` and ``span_id`` as attributes (``--log-format json`` prints them)."""
    global _installed
    if _installed:
        return
    _installed = True
    from opentelemetry import trace

    make = logging.getLogRecordFactory()
    current = trace.get_current_span

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        ctx = current().get_span_context()
        if ctx.is_valid:
            record.trace_id = f"{ctx.trace_id:032x}"
            record.span_id = f"{ctx.span_id:016x}"
        return record

    logging.setLogRecordFactory(factory)
