"""``pgqueue metrics serve``: the whole queue, as the database sees it, for Prometheus.

Every scrape reads the ``queue_stats`` view and the workers table (two cheap queries on
pgqueue's own connection pool; a reader role is enough, see ``pgqueue grant``). Run one
exporter per database, not one per worker: the figures are the same from everywhere.

Series:
- ``pgqueue_queue_jobs{queue,state}``: jobs per queue in each state (queued = due now,
  scheduled, waiting (for dependencies), running, failed = the dead letter);
- ``pgqueue_queue_oldest_queued_age_seconds{queue}``: how long the oldest due job has
  waited (0 when none);
- ``pgqueue_dead_letter_jobs{queue}``: failed jobs kept for inspection or retry;
- ``pgqueue_queue_finished_last_minute{queue}``, ``pgqueue_queue_paused{queue}``;
- ``pgqueue_workers_alive``: workers whose last heartbeat is younger than
  ``stale_after``; ``pgqueue_worker_heartbeat_age_seconds{worker}`` per registered one;
- ``pgqueue_fleet_up``: 1 if the database answered this scrape, else 0 (and nothing
  else is reported, rather than stale figures).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import psycopg

from ..app import App
from ..db import first_line
from ..errors import ConfigurationError, PgQueueError
from . import require

log = logging.getLogger("pgqueue.metrics")

STATES = ("queued", "scheduled", "waiting", "running", "failed")


class FleetCollector:
    """A prometheus-client collector over ``app``'s schema."""

    def __init__(self, app: App, stale_after: float = 60.0) -> None:
        self.app = app
        self.stale_after = stale_after

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        try:
            queues = self.app.admin.queues()
            workers = self.app.admin.workers()
        except (psycopg.Error, PgQueueError) as exc:
            log.warning("fleet metrics: the database did not answer: %s", first_line(exc))
            yield GaugeMetricFamily("pgqueue_fleet_up", "1 if the database answered", value=0)
            return
        yield GaugeMetricFamily("pgqueue_fleet_up", "1 if the database answered", value=1)
        depth = GaugeMetricFamily(
            "pgqueue_queue_jobs", "Jobs per queue and state", labels=["queue", "state"]
        )
        oldest = GaugeMetricFamily(
            "pgqueue_queue_oldest_queued_age_seconds",
            "Age of the oldest due job of the queue (0 when none)",
            labels=["queue"],
        )
        dead = GaugeMetricFamily(
            "pgqueue_dead_letter_jobs", "Failed jobs (the dead letter) per queue", labels=["queue"]
        )
        finished = GaugeMetricFamily(
            "pgqueue_queue_finished_last_minute",
            "Jobs of the queue that finished in the last minute",
            labels=["queue"],
        )
        paused = GaugeMetricFamily(
            "pgqueue_queue_paused", "1 if the queue is paused", labels=["queue"]
        )
        for q in queues:
            name = str(q["queue"])
            for state in STATES:
                depth.add_metric([name, state], float(q.get(state) or 0))
            oldest.add_metric([name], float(q.get("oldest_queued_age_seconds") or 0))
            dead.add_metric([name], float(q.get("failed") or 0))
            finished.add_metric([name], float(q.get("finished_last_minute") or 0))
            paused.add_metric([name], 1.0 if q.get("paused") else 0.0)
        yield from (depth, oldest, dead, finished, paused)
        ages = GaugeMetricFamily(
            "pgqueue_worker_heartbeat_age_seconds",
            "Seconds since each registered worker's last heartbeat",
            labels=["worker"],
        )
        alive = 0
        for w in workers:
            age = float(w.get("heartbeat_age_seconds") or 0)
            ages.add_metric([str(w["id"])], age)
            alive += age < self.stale_after
        yield GaugeMetricFamily(
            "pgqueue_workers_alive",
            "Workers whose last heartbeat is recent (younger than --stale-after)",
            value=alive,
        )
        yield ages


def serve_fleet(app: App, port: int, host: str = "0.0.0.0", stale_after: float = 60.0) -> Any:
    """Serve ``app``'s fleet metrics on ``host:port`` in a background thread; returns the
    server (``.shutdown()``; ``.server_port`` is the port, for 0). Raises
    ``ConfigurationError`` without prometheus-client or when the port is taken."""
    require()
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry()
    registry.register(FleetCollector(app, stale_after))  # type: ignore[arg-type]
    try:
        server, _ = start_http_server(port, host, registry)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}"
        ) from None
    return server
