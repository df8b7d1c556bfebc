"""One worker's Prometheus metrics, counted cheaply and rendered when scraped.

The hot path pays a dict lookup, a few integer additions and one ``bisect`` per job per
histogram, on the worker's loop (``on_claimed`` for a whole claim, ``on_finished`` for a
whole written batch). prometheus-client's own metric objects (a lock and label lookup per
call) are not used for that; ``collect`` builds the metric families from these counts at
scrape time, in the HTTP server's thread.

Series (labels ``queue`` and ``task`` where shown):
- ``pgqueue_jobs_started_total{queue,task}``: claimed by this worker (``started_at``
  is set by the claim; with ``--prefetch`` a buffered job counts when claimed);
- ``pgqueue_jobs_succeeded_total``, ``..._retried_total`` (failed, will run again),
  ``..._failed_total`` (failed for good: the dead letter), ``..._cancelled_total``,
  ``..._lost_total`` (lease lost, result thrown away), all ``{queue,task}``;
- ``pgqueue_job_run_duration_seconds{queue,task}``: the handler's run, histogram;
- ``pgqueue_job_queue_wait_seconds{queue,task}``: from due (enqueued, or the end of a
  delay or backoff) to claimed, on the database's clock, histogram;
- ``pgqueue_jobs_running``, ``pgqueue_jobs_buffered`` (prefetched), gauges;
- ``pgqueue_claim_batch_size``: jobs per claim that found any, histogram;
- ``pgqueue_lease_renewals_total``, ``pgqueue_lease_losses_total``,
  ``pgqueue_heartbeat_failures_total``;
- ``pgqueue_listen_connected`` (1/0), ``pgqueue_listen_reconnects_total``.
"""

from __future__ import annotations

import logging
import os
from bisect import bisect_left
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from ..hooks import CANCELLED, FAILED, RETRIED, SUCCEEDED, FinishedEvent
from . import require

if TYPE_CHECKING:
    from ..worker.loop import Worker
    from ..worker.runner import Claimed

log = logging.getLogger("pgqueue.metrics")

RUN_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
               60.0, 300.0, 900.0, 3600.0)  # fmt: skip
WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                300.0, 900.0, 3600.0)  # fmt: skip
BATCH_BUCKETS = (1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0)

#: Environment variable naming a file where a worker writes the port it serves metrics
#: on (``--processes``: the supervisor reads it, see ``relay``).
PORT_FILE_ENV = "PGQUEUE_METRICS_PORT_FILE"


class Histogram:
    """Bucket counts (not cumulative) and the sum; ``le`` semantics as Prometheus."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative ``(le, count)`` pairs, +Inf last."""
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*self.bounds, float("inf")), list(self.counts), strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(float(bound)), running))
        return out


class _Stats:
    """The counts of one (queue, task)."""

    __slots__ = ("cancelled", "failed", "lost", "retried", "run", "started", "succeeded", "wait")

    def __init__(self) -> None:
        self.started = self.succeeded = self.failed = self.retried = 0
        self.lost = self.cancelled = 0
        self.run = Histogram(RUN_BUCKETS)
        self.wait = Histogram(WAIT_BUCKETS)


_COUNTERS = (
    ("started", "Jobs claimed (started) by this worker"),
    ("succeeded", "Jobs that succeeded"),
    ("retried", "Failed attempts that will run again after their backoff"),
    ("failed", "Jobs that failed for good (dead letter)"),
    ("cancelled", "Jobs that ended cancelled while held by this worker"),
    ("lost", "Runs given up because the lease was lost (result discarded)"),
)


class WorkerMetrics:
    """Counts one worker's jobs (as ``on_claimed``/``on_finished`` hooks) and renders
    them (``collect``, a prometheus-client collector)."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.stats: dict[tuple[str, str], _Stats] = {}
        self.batches = Histogram(BATCH_BUCKETS)

    def _of(self, job: Claimed) -> _Stats:
        key = (job.queue, job.task)
        stats = self.stats.get(key)
        if stats is None:
            stats = self.stats[key] = _Stats()
        return stats

    def claimed(self, jobs: list[Claimed]) -> None:
        """An ``on_claimed`` hook. Runs for every job: the histogram update is inlined,
        and consecutive jobs of one queue and task (the usual batch) share a lookup."""
        if not jobs:
            return
        self.batches.observe(len(jobs))
        key: tuple[str, str] | None = None
        s = _Stats()
        counts: list[int] = []
        for job in jobs:
            if key is None or job.task != key[1] or job.queue != key[0]:
                key = (job.queue, job.task)
                s = self.stats.get(key) or self._of(job)
                counts = s.wait.counts
            s.started += 1
            waited = job.waited
            counts[bisect_left(WAIT_BUCKETS, waited)] += 1
            s.wait.total += waited

    def finished(self, events: list[FinishedEvent]) -> None:
        """An ``on_finished`` hook (see ``claimed``)."""
        key: tuple[str, str] | None = None
        s = _Stats()
        counts: list[int] = []
        for outcome, state in events:
            job = outcome.job
            if key is None or job.task != key[1] or job.queue != key[0]:
                key = (job.queue, job.task)
                s = self.stats.get(key) or self._of(job)
                counts = s.run.counts
            if state == SUCCEEDED:
                s.succeeded += 1
            elif state == RETRIED:
                s.retried += 1
            elif state == FAILED:
                s.failed += 1
            elif state == CANCELLED:
                s.cancelled += 1
                continue
            else:  # LOST: no outcome, no duration
                s.lost += 1
                continue
            duration = outcome.duration
            counts[bisect_left(RUN_BUCKETS, duration)] += 1
            s.run.total += duration

    # -- scrape ----------------------------------------------------------------------------
    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        rows = list(self.stats.items())
        labels = ["queue", "task"]
        for name, doc in _COUNTERS:
            family = CounterMetricFamily(f"pgqueue_jobs_{name}", doc, labels=labels)
            for key, s in rows:
                family.add_metric(list(key), getattr(s, name))
            yield family
        for name, attr, doc in (
            ("pgqueue_job_run_duration_seconds", "run", "How long handlers ran"),
            (
                "pgqueue_job_queue_wait_seconds",
                "wait",
                "From due (enqueued, or delay/backoff over) to claimed",
            ),
        ):
            hist = HistogramMetricFamily(name, doc, labels=labels)
            for key, s in rows:
                h: Histogram = getattr(s, attr)
                hist.add_metric(list(key), h.buckets(), h.total)
            yield hist
        batch = HistogramMetricFamily("pgqueue_claim_batch_size", "Jobs per claim that found any")
        batch.add_metric([], self.batches.buckets(), self.batches.total)
        yield batch
        w = self.worker
        dispatcher = w.dispatcher
        yield GaugeMetricFamily(
            "pgqueue_jobs_running",
            "Jobs whose handler is running now",
            value=len(dispatcher.running) if dispatcher else 0,
        )
        yield GaugeMetricFamily(
            "pgqueue_jobs_buffered",
            "Jobs claimed ahead (--prefetch), waiting for a slot",
            value=len(dispatcher.buffer) if dispatcher else 0,
        )
        beat = getattr(w, "heartbeat", None)
        for name, attr, doc in (
            ("pgqueue_lease_renewals_total", "renewed", "Job leases renewed by the heartbeat"),
            ("pgqueue_lease_losses_total", "lost", "Job leases the heartbeat found lost"),
            ("pgqueue_heartbeat_failures_total", "failures", "Heartbeats that failed"),
        ):
            yield CounterMetricFamily(name[: -len("_total")], doc, value=getattr(beat, attr, 0))
        listener = w.listener
        yield GaugeMetricFamily(
            "pgqueue_listen_connected",
            "1 if the LISTEN connection is up (0: polling only, or --no-listen)",
            value=1 if listener is not None and listener.connected.is_set() else 0,
        )
        yield CounterMetricFamily(
            "pgqueue_listen_reconnects",
            "Times the LISTEN connection was re-opened",
            value=listener.reconnects if listener is not None else 0,
        )


class _Global:
    """prometheus-client's default registry (an app's own metrics, the process
    collector), served next to pgqueue's."""

    def collect(self) -> Iterator[Any]:
        from prometheus_client import REGISTRY

        yield from REGISTRY.collect()


class MetricsServer:
    """The worker's ``/metrics`` HTTP server and its hooks; ``close`` removes both."""

    def __init__(self, worker: Worker, port: int, host: str) -> None:
        require()
        from prometheus_client import CollectorRegistry, start_http_server

        self.worker = worker
        self.metrics = WorkerMetrics(worker)
        registry = CollectorRegistry()
        registry.register(self.metrics)  # type: ignore[arg-type]
        registry.register(_Global())  # type: ignore[arg-type]
        try:
            self._server, self._thread = start_http_server(port, host, registry)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}"
            ) from None
        hooks = worker.app.hooks
        hooks.claimed.append(self.metrics.claimed)
        hooks.finished.append(self.metrics.finished)
        self.port: int = self._server.server_port
        log.info("metrics on http://%s:%d/metrics", host, self.port)
        path = os.environ.get(PORT_FILE_ENV)
        if path:
            with open(path + ".tmp", "w") as f:
                f.write(str(self.port))
            os.replace(path + ".tmp", path)

    def close(self) -> None:
        hooks = self.worker.app.hooks
        if self.metrics.claimed in hooks.claimed:
            hooks.claimed.remove(self.metrics.claimed)
        if self.metrics.finished in hooks.finished:
            hooks.finished.remove(self.metrics.finished)
        self._server.shutdown()
        self._server.server_close()


def serve_worker_metrics(worker: Worker, port: int, host: str = "0.0.0.0") -> MetricsServer:
    """Start ``worker``'s ``/metrics`` on ``host:port`` (0: a free port, see ``.port``).
    Raises ``ConfigurationError`` without prometheus-client, ``OSError`` if the port is
    taken."""
    return MetricsServer(worker, port, host)
