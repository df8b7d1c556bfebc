"""The benchmark's workloads W1-W5, each a function returning its figures.

Each runs in the benchmark's throwaway schema. Drain times come from the database's
own timestamps (``max(finished_at) - min(created_at)``), so polling does not bias them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import psycopg

from ..app import App
from ..errors import PgQueueError
from ..jobspec import JobSpec


class BenchError(PgQueueError):
    """A workload could not finish (a worker died, a deadline passed)."""


def reset(app: App) -> None:
    """Empty the jobs table between runs."""
    with psycopg.connect(app.dsn, autocommit=True, prepare_threshold=None) as conn:
        conn.execute(f'TRUNCATE "{app.schema}".jobs, "{app.schema}".succeeded_jobs')
        conn.execute(f'DELETE FROM "{app.schema}".workers')
        conn.execute(f'VACUUM ANALYZE "{app.schema}".jobs')


def w1_bulk(app: App, jobs: int) -> dict[str, float]:
    """W1: ``jobs`` jobs through the fastest bulk API (``enqueue_batch``, one COPY); jobs/s."""
    items = [{"i": n} for n in range(jobs)]
    # Connecting is not enqueueing: warm the pool and the schema check first, as W2 does
    # (and as the peers' drivers connect before their clocks start).
    app.enqueue("bench.noop", kwargs={"i": -1})
    started = time.perf_counter()
    app.enqueue_batch("bench.noop", items)
    return {"jobs_per_s": jobs / (time.perf_counter() - started)}


def w2_single(app: App, jobs: int) -> dict[str, float]:
    """W2: one ``enqueue`` per call and transaction, one client; jobs/s."""
    app.enqueue("bench.noop", kwargs={"i": -1})  # warm the pool and the schema check
    started = time.perf_counter()
    for n in range(jobs):
        app.enqueue("bench.noop", kwargs={"i": n})
    return {"jobs_per_s": jobs / (time.perf_counter() - started)}


def w6_concurrent(app: App, jobs: int, producers: int, threads: bool) -> dict[str, float]:
    """W6: ``producers`` asyncio tasks (or threads) enqueueing single jobs at once, as the
    requests of a busy web app do: ``jobs`` in all, one call and commit each; jobs/s.
    Concurrent commits share WAL flushes (PostgreSQL's group commit), which is why this
    can beat one client's W2 many times over with every enqueue still durable."""
    each = max(1, jobs // producers)
    if threads:
        app.enqueue("bench.noop", kwargs={"i": -1})  # open the pool, check the schema

        def produce(p: int) -> None:
            for n in range(each):
                app.enqueue("bench.noop", kwargs={"p": p, "i": n})

        with concurrent.futures.ThreadPoolExecutor(producers) as pool:
            started = time.perf_counter()
            list(pool.map(produce, range(producers)))
            elapsed = time.perf_counter() - started
        return {"jobs_per_s": each * producers / elapsed}

    async def main() -> float:
        await app.enqueue_async("bench.noop", kwargs={"i": -1})

        async def produce(p: int) -> None:
            for n in range(each):
                await app.enqueue_async("bench.noop", kwargs={"p": p, "i": n})

        try:
            started = time.perf_counter()
            await asyncio.gather(*(produce(p) for p in range(producers)))
            return time.perf_counter() - started
        finally:  # the async pool belongs to this event loop: close it here
            pool, app._apool = app._apool, None
            if pool is not None:
                await pool.close()

    elapsed = asyncio.run(main())
    return {"jobs_per_s": each * producers / elapsed}


@contextlib.contextmanager
def worker_process(
    app: App,
    concurrency: int,
    *options: str,
    queue: str = "default",
    log_level: str = "info",
    app_path: str = "pgqueue.bench.tasks:app",
) -> Iterator[subprocess.Popen[bytes]]:
    """A ``pgqueue work`` child on the bench schema, ready (registered) when entered.

    It logs at ``log_level`` (by default info, the worker's own default) into a
    temporary file, as a worker writing its log to a file or pipe does; the file's last
    lines are shown if the worker fails."""
    cmd = [
        sys.executable,
        "-m",
        "pgqueue.cli",
        "--dsn",
        app.dsn,
        "--schema",
        app.schema,
        "--app",
        app_path,
        "work",
        "-q",
        queue,
        "-c",
        str(concurrency),
        "--log-level",
        log_level,
        "--shutdown-timeout",
        "5",
        *options,
    ]
    logfile = tempfile.TemporaryFile(mode="w+b")  # noqa: SIM115 (closed in finally)
    proc = subprocess.Popen(
        cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=logfile, stderr=logfile
    )
    try:
        deadline = time.monotonic() + 30
        with psycopg.connect(app.dsn, autocommit=True, prepare_threshold=None) as conn:
            while True:
                row = conn.execute(f'SELECT count(*) FROM "{app.schema}".workers').fetchone()
                if row and row[0]:
                    break
                if proc.poll() is not None:
                    raise BenchError(
                        f"the worker process exited with {proc.returncode} at start: "
                        + _tail(logfile)
                    )
                if time.monotonic() > deadline:
                    raise BenchError("the worker process did not start within 30 s")
                time.sleep(0.05)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        logfile.close()


def _tail(logfile: Any, lines: int = 5) -> str:
    """The last lines a worker wrote, for an error message."""
    logfile.seek(0)
    text = logfile.read().decode(errors="replace").strip().splitlines()
    return " | ".join(text[-lines:]) or "(it wrote nothing)"


def _wait_drained(app: App, timeout: float, ids: list[int] | None = None) -> None:
    """Wait until the measured jobs (``ids``; without them every job of priority >= 0)
    are finished. With ``ids`` the check reads their primary-key range only: a count
    over a million backlog rows every 50 ms took a core from the drain it measured."""
    deadline = time.monotonic() + timeout
    if ids:
        check = (
            f'SELECT count(*) FROM "{app.schema}".jobs '
            "WHERE id BETWEEN %s AND %s AND state IN ('queued', 'running')"
        )
        params: tuple[Any, ...] = (min(ids), max(ids))
    else:
        check = (
            f"SELECT count(*) FROM \"{app.schema}\".jobs WHERE state IN ('queued', 'running') "
            "AND priority >= 0"
        )
        params = ()
    with psycopg.connect(app.dsn, autocommit=True, prepare_threshold=None) as conn:
        while True:
            row = conn.execute(check, params).fetchone()
            if row and row[0] == 0:
                return
            if time.monotonic() > deadline:
                raise BenchError(
                    f"{row[0] if row else '?'} jobs still unfinished after {timeout:.0f}s"
                )
            time.sleep(0.05)


def w3_drain(
    app: App,
    jobs: int,
    concurrency: int,
    backlog: int = 0,
    prefetch: int = 0,
    log_level: str = "info",
    observed: str = "",
) -> dict[str, float]:
    """W3 (and W5 with ``backlog``): drain ``jobs`` queued no-op jobs; jobs/s.

    The backlog sits in the same queue at priority -1, behind the measured jobs. The
    worker logs every job at ``log_level`` info (its default); W3Q runs it at warning.
    ``observed``: "metrics" (W3M) serves Prometheus metrics (``--metrics-port``, not
    scraped); "all" (W3O) also traces, producer and worker (``pgqueue.bench.traced``:
    every span sampled unless OTEL_TRACES_SAMPLER says otherwise).
    """
    if backlog:
        insert_backlog(app, backlog)
    options = ["--prefetch", str(prefetch)]
    app_path = "pgqueue.bench.tasks:app"
    if observed:
        options += ["--metrics-port", "0", "--metrics-host", "127.0.0.1"]
    if observed == "all":
        app_path = "pgqueue.bench.traced:app"
    with (
        worker_process(
            app, concurrency, *options, log_level=log_level, app_path=app_path
        ) as proc,
        _traced(app, observed == "all"),
    ):
        cpu_before = cpu_seconds(proc.pid)
        ids = app.enqueue_many(JobSpec("bench.noop", kwargs={"i": n}) for n in range(jobs))
        _wait_drained(app, timeout=max(120.0, jobs / 100), ids=[int(i) for i in ids])
        cpu_after = cpu_seconds(proc.pid)
    with psycopg.connect(app.dsn, autocommit=True, prepare_threshold=None) as conn:
        row: Any = conn.execute(
            f"SELECT EXTRACT(EPOCH FROM max(finished_at) - min(created_at)), count(*) "
            f"FROM \"{app.schema}\".all_jobs WHERE state = 'succeeded' AND priority >= 0"
        ).fetchone()
    seconds, done = float(row[0]), int(row[1])
    if done != jobs:
        raise BenchError(f"{done} of {jobs} jobs succeeded")
    figures = {"jobs_per_s": jobs / seconds}
    if cpu_before is not None and cpu_after is not None:
        # what the worker spent per job, whatever else the machine ran meanwhile
        figures["worker_cpu_us_per_job"] = (cpu_after - cpu_before) / jobs * 1e6
    return figures


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) process ``pid`` has used, from /proc; None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # utime and stime are the 14th and 15th fields; fields[0] here is the 3rd (state)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def _traced(app: App, on: bool) -> Iterator[None]:
    """The producer traced as the worker is (W3O): its jobs carry a trace context."""
    if not on:
        yield
        return
    try:
        from .traced import tracer_provider
    except ImportError as exc:
        raise BenchError(f"W3O needs opentelemetry-sdk ({exc})") from None
    from ..otel import instrument

    provider = tracer_provider()
    inst = instrument(app, tracer_provider=provider)
    try:
        yield
    finally:
        inst.uninstrument()
        provider.shutdown()


def insert_backlog(app: App, count: int) -> None:
    """``count`` queued jobs at priority -1, written with COPY in chunks."""
    with psycopg.connect(app.dsn, autocommit=True, prepare_threshold=None) as conn:
        with conn.cursor().copy(
            f'COPY "{app.schema}".jobs (queue, task, kwargs, priority) FROM STDIN'
        ) as copy:
            for n in range(count):
                copy.write_row(("default", "bench.noop", f'{{"i":{n}}}', -1))
        conn.execute(f'ANALYZE "{app.schema}".jobs')


def w4_latency(
    app: App, jobs: int, gap: float = 0.02, fast_claims: bool = False
) -> dict[str, float]:
    """W4: an idle worker; jobs enqueued one at a time ``gap`` apart; handler-start
    latency after ``enqueue`` returned, p50 and p99 in ms."""
    sent: dict[int, float] = {}
    with worker_process(app, 10, *(["--fast-claims"] if fast_claims else [])):
        app.enqueue("bench.noop", kwargs={"i": -1})  # warm-up, not measured
        time.sleep(0.2)
        for _ in range(jobs):
            job_id = app.enqueue("bench.stamp")
            sent[job_id] = time.time()
            time.sleep(gap)
        _wait_drained(app, timeout=60)
    with psycopg.connect(app.dsn, autocommit=True, prepare_threshold=None) as conn:
        rows = conn.execute(
            f"SELECT id, result FROM \"{app.schema}\".all_jobs WHERE task = 'bench.stamp'"
        ).fetchall()
    latencies = sorted((float(result) - sent[int(job_id)]) * 1000 for job_id, result in rows)
    if len(latencies) != jobs:
        raise BenchError(f"{len(latencies)} of {jobs} latency jobs finished")
    return {"p50_ms": _pct(latencies, 50), "p99_ms": _pct(latencies, 99)}


def _pct(sorted_values: list[float], pct: float) -> float:
    k = (len(sorted_values) - 1) * pct / 100
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)
