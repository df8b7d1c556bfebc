"""Prometheus metrics, scraped over HTTP and parsed with prometheus-client's parser: one
worker in this process, ``pgqueue work --processes 2 --metrics-port``, and the fleet
exporter ``pgqueue metrics serve``."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from typing import Any

import psycopg
from prometheus_client.parser import text_string_to_metric_families

from pgqueue import App, JobSpec, RetryPolicy
from pgqueue.metrics.fleet import serve_fleet
from tests.helpers import wait_until
from tests.worker.inproc import running
from tests.worker.procs import Workers

Conn = psycopg.Connection[Any]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    """Every sample of http://127.0.0.1:PORT/metrics: (name, labels) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every series of ``name`` that has ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_worker_metrics(app: App) -> None:
    release = threading.Event()

    @app.task(name="ok", queue="mq")
    async def ok() -> None: ...

    @app.task(name="bad", queue="mq", max_attempts=2, retry=RetryPolicy(base=0.05, jitter=0))
    def bad() -> None:
        raise ValueError("no")

    @app.task(name="hold", queue="mq")
    def hold() -> None:
        release.wait(20)

    for _ in range(5):
        ok.defer()
    bad.defer()
    held = hold.defer()
    try:
        with running(app, queues=["mq"], metrics_port=0, lease=1.5, poll_interval=0.05) as w:
            port = w.metrics.port
            wait_until(
                lambda: value(scrape(port), "pgqueue_jobs_failed_total", queue="mq", task="bad"),
                timeout=20,
                what="the failing job dead-lettered",
            )
            # the held job is running, and its lease is renewed every 0.5 s
            m = wait_until(
                lambda: (s := scrape(port))["pgqueue_lease_renewals_total", frozenset()] > 0 and s,
                what="a lease renewal",
            )
            assert value(m, "pgqueue_jobs_running") == 1
            assert value(m, "pgqueue_jobs_started_total", queue="mq", task="ok") == 5
            assert value(m, "pgqueue_jobs_succeeded_total", queue="mq", task="ok") == 5
            assert value(m, "pgqueue_jobs_retried_total", queue="mq", task="bad") == 1
            assert value(m, "pgqueue_jobs_failed_total", queue="mq", task="bad") == 1
            assert value(m, "pgqueue_jobs_started_total", queue="mq", task="bad") == 2
            assert value(m, "pgqueue_jobs_lost_total", queue="mq", task="ok") == 0
            assert value(m, "pgqueue_jobs_cancelled_total", queue="mq", task="ok") == 0
            run = {"queue": "mq", "task": "ok"}
            assert value(m, "pgqueue_job_run_duration_seconds_count", **run) == 5
            assert value(m, "pgqueue_job_run_duration_seconds_bucket", **run, le="+Inf") == 5
            assert value(m, "pgqueue_job_queue_wait_seconds_count", **run) == 5
            assert value(m, "pgqueue_job_run_duration_seconds_count", queue="mq", task="bad") == 2
            assert total(m, "pgqueue_claim_batch_size_count") >= 1
            assert total(m, "pgqueue_claim_batch_size_sum") == 5 + 2 + 1
            assert value(m, "pgqueue_listen_connected") == 1
            assert value(m, "pgqueue_listen_reconnects_total") == 0
            assert value(m, "pgqueue_lease_losses_total") == 0
            release.set()
            held.result(timeout=10)
            wait_until(
                lambda: value(scrape(port), "pgqueue_jobs_running") == 0, what="nothing runs"
            )
    finally:
        release.set()
    assert not app.hooks.claimed and not app.hooks.finished  # the worker removed its hooks


def test_processes_share_one_endpoint(qapp: App, conn: Conn, schema: str, workers: Workers) -> None:
    port = free_port()
    workers.start("--processes", "2", "-c", "8", "--metrics-port", str(port), name="sup")
    wait_until(lambda: len(workers.registered(conn)) == 2, timeout=30, what="2 workers")
    ids = qapp.enqueue_many(JobSpec("record", (i,)) for i in range(200))
    for job_id in ids:
        job_id.result(timeout=60)

    def both() -> Samples | None:
        m = scrape(port)
        done = total(m, "pgqueue_jobs_succeeded_total", task="record")
        return m if done == 200 and value(m, "pgqueue_processes_scraped") == 2 else None

    m = wait_until(both, timeout=20, what="both processes scraped, 200 successes")
    processes = {
        dict(labels)["process"] for (name, labels), _ in m.items() if name == "pgqueue_jobs_running"
    }
    assert processes == {"0", "1"}
    assert total(m, "pgqueue_jobs_started_total", task="record") == 200


def test_fleet_exporter(app: App, conn: Conn, schema: str) -> None:
    @app.task(name="f", queue="fleet")
    def f() -> None: ...

    for _ in range(3):
        f.defer()
    app.enqueue(f, delay=3600)
    conn.execute(
        f'INSERT INTO "{schema}".workers (id, host, pid, queues, concurrency) '
        "VALUES ('w-1', 'h', 1, '{fleet}', 1)"
    )
    server = serve_fleet(app, 0, "127.0.0.1")
    try:
        m = scrape(server.server_port)
    finally:
        server.shutdown()
    assert value(m, "pgqueue_fleet_up") == 1
    assert value(m, "pgqueue_queue_jobs", queue="fleet", state="queued") == 3
    assert value(m, "pgqueue_queue_jobs", queue="fleet", state="scheduled") == 1
    assert value(m, "pgqueue_queue_jobs", queue="fleet", state="failed") == 0
    assert value(m, "pgqueue_dead_letter_jobs", queue="fleet") == 0
    oldest = value(m, "pgqueue_queue_oldest_queued_age_seconds", queue="fleet")
    assert oldest is not None and oldest >= 0
    assert value(m, "pgqueue_workers_alive") == 1
    assert value(m, "pgqueue_worker_heartbeat_age_seconds", worker="w-1") is not None


def test_metrics_serve_command(pg_dsn: str, schema: str) -> None:
    port = free_port()
    cmd = [sys.executable, "-m", "pgqueue.cli", "--dsn", pg_dsn, "--schema", schema]
    proc = subprocess.Popen(
        [*cmd, "metrics", "serve", "--port", str(port), "--host", "127.0.0.1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        m = wait_until(lambda: _try_scrape(port), timeout=20, what="the exporter answers")
        assert value(m, "pgqueue_fleet_up") == 1
        assert value(m, "pgqueue_workers_alive") == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0


def _try_scrape(port: int) -> Samples | None:
    try:
        return scrape(port)
    except OSError:
        return None
