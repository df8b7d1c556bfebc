"""A worker role (``pgqueue grant worker``) does everything ``pgqueue work`` does, in this
process and as a real ``pgqueue work``; a producer role waits for its jobs' results; the
vacuumer, without the right to VACUUM, says so once and stops."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool

from pgqueue import App, JobCancelled, JobFailed, RetryPolicy
from pgqueue.maintenance import Pruner, Reaper, Vacuumer
from pgqueue.maintenance.dependencies import DependencySweep
from pgqueue.maintenance.pruner import Retention
from pgqueue.worker import JobContext
from tests.helpers import wait_until
from tests.worker.inproc import running
from tests.worker.procs import Workers, create_effects, job

Conn = psycopg.Connection[Any]
MakeRole = Callable[..., str]
FAST = RetryPolicy(base=0.05, factor=1.0, max_delay=0.05, jitter=0.0)


def user(dsn: str) -> str:
    return str(conninfo_to_dict(dsn)["user"])


def one(conn: Conn, query: str) -> Any:
    """The first row of ``query`` (owner's view)."""
    return conn.execute(query).fetchone()


def no_permission_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "permission denied" in r.getMessage()]


def test_a_worker_role_runs_what_a_producer_role_enqueued(
    make_role: MakeRole, schema: str, conn: Conn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pgqueue")
    producer = App(make_role("producer"), schema=schema, strict_tasks=False)
    operator = App(make_role("operator"), schema=schema, strict_tasks=False)
    worker_app = App(make_role("worker"), schema=schema)
    # A limited queue: its claims lock its row and count the rate window; aging stamps it.
    conn.execute(
        f"SELECT \"{schema}\".set_queue_limits('limited', max_running => 2, rate_limit => 1000, "
        "rate_period => 1, priority_aging => 0.1)"
    )

    @worker_app.task(name="double")
    def double(x: int) -> int:
        return 2 * x

    @worker_app.task(name="flaky", retry=FAST, pass_context=True)
    def flaky(ctx: JobContext) -> int:
        if ctx.attempt == 1:
            raise RuntimeError("the first attempt fails")
        return ctx.attempt

    @worker_app.task(name="dead")
    def dead() -> None:
        raise RuntimeError("always")

    @worker_app.task(name="hold", pass_context=True)
    def hold(ctx: JobContext) -> str:
        ctx.cancelled.wait(20)
        return "stopped"

    @worker_app.task(name="total")
    def total(ids: list[int]) -> int:  # reads results, as a producer
        return sum(worker_app.job(i).result(timeout=10) for i in ids)

    @worker_app.periodic(every=1, name="tick", grace=3600)
    def tick() -> str:
        return "tick"

    try:
        a = producer.enqueue("double", [1])
        b = producer.enqueue("double", [2], queue="limited", group_key="tenant-1")
        c = producer.enqueue("flaky", dedupe_key="flaky-1")
        t = producer.enqueue("total", [[a, b]], after=[a, b])
        d = producer.enqueue("dead", max_attempts=1)
        with running(worker_app, queues=["default", "limited"], lease=5):
            assert producer.job(a).result(timeout=15) == 2
            assert producer.job(b).result(timeout=15) == 4
            assert producer.job(c).result(timeout=15) == 2  # retried once
            assert producer.job(t).result(timeout=15) == 6
            with pytest.raises(JobFailed):
                producer.job(d).result(timeout=15)
            assert operator.admin.retry([d]) == {d: True}
            wait_until(lambda: job(conn, schema, d)["attempt"] == 2, what="dead job run again")
            h = producer.enqueue("hold")
            wait_until(lambda: producer.job(h).state() == "running", what="hold running")
            assert operator.admin.cancel([h]) == {h: "cancelling"}
            with pytest.raises(JobCancelled):
                producer.job(h).result(timeout=15)
            ticks = f"SELECT count(*) FROM \"{schema}\".all_jobs WHERE task = 'tick' AND state = %s"
            wait_until(
                lambda: conn.execute(ticks, ("succeeded",)).fetchone() == (1,),
                timeout=15,
                what="a periodic job run",
            )
            stamps = (
                f'SELECT priority_aged_at IS NOT NULL, rate_window_count FROM "{schema}".queues'
            )
            wait_until(lambda: one(conn, stamps) == (True, 1), what="the limited queue's stamps")
        assert conn.execute(f'SELECT count(*) FROM "{schema}".workers').fetchone() == (0,)
    finally:
        for application in (producer, operator, worker_app):
            application.close()
    assert no_permission_errors(caplog) == []


def test_maintenance_passes_as_the_worker_role(
    make_role: MakeRole, schema: str, conn: Conn, app: App, caplog: pytest.LogCaptureFixture
) -> None:
    """The reaper, the pruner, the dependency sweep (their statements, run once each),
    and the vacuumer, which cannot VACUUM as this role: it says so once and stops."""
    s = f'"{schema}"'
    app.strict_tasks = False
    lost = app.enqueue("t.lost")
    conn.execute(
        f"UPDATE {s}.jobs SET state = 'running', attempt = 1, worker_id = 'gone', "
        "lease_expires_at = now() - interval '1 minute' WHERE id = %s",
        (lost,),
    )
    conn.execute(
        f"INSERT INTO {s}.workers (id, host, pid, queues, concurrency, last_heartbeat_at) "
        "VALUES ('gone', 'h', 1, '{default}', 1, now() - interval '1 hour')"
    )
    parent = app.enqueue("t.parent")
    child = app.enqueue("t.child", after=[parent])
    old = app.enqueue("t.old")
    for job_id, finished in ((parent, "now()"), (old, "now() - interval '30 days'")):
        conn.execute(
            f"UPDATE {s}.jobs SET state = 'succeeded', finished_at = {finished} WHERE id = %s",
            (job_id,),
        )
        conn.execute(
            f"WITH m AS (DELETE FROM {s}.jobs WHERE id = %s RETURNING *) "
            f"INSERT INTO {s}.succeeded_jobs SELECT * FROM m",
            (job_id,),
        )
    for _ in range(3):  # dead rows, so that a vacuum would be due
        conn.execute(f"UPDATE {s}.jobs SET priority = priority + 1")
    caplog.set_level(logging.INFO, logger="pgqueue")

    async def passes() -> tuple[int, int, int, bool, bool, bool]:
        async with AsyncConnectionPool(
            make_role("worker"), min_size=1, max_size=1, kwargs={"autocommit": True}
        ) as pool:
            reaped = await Reaper(pool, schema, 1.0, dead_worker_after=60).run_once()
            pruned = await Pruner(pool, schema, Retention(succeeded=86400), 1.0).run_once()
            swept = await DependencySweep(pool, schema, interval=1.0).run_once()
            vacuumer = Vacuumer(pool, schema, min_dead=0, dead_fraction=0, stale_after=0)
            first = await vacuumer.run_once()
            second = await vacuumer.run_once()
            return reaped, pruned, swept, first, second, vacuumer.stopped

    assert asyncio.run(passes()) == (1, 1, 1, False, False, True)
    assert job(conn, schema, lost)["state"] == "queued"
    assert job(conn, schema, child)["state"] == "queued"
    assert conn.execute(f"SELECT count(*) FROM {s}.all_jobs WHERE id = %s", (old,)).fetchone() == (
        0,
    )
    assert conn.execute(f"SELECT count(*) FROM {s}.workers").fetchone() == (0,)
    said = [r for r in caplog.records if "vacuumer off" in r.getMessage()]
    assert len(said) == 1 and "may not VACUUM" in said[0].getMessage()
    assert no_permission_errors(caplog) == []


def test_pgqueue_work_runs_as_the_worker_role(make_role: MakeRole, schema: str, conn: Conn) -> None:
    """The real command, as the worker role: jobs, a retry, after= with results read inside
    a handler, periodic jobs; a clean SIGTERM; no permission error in its log."""
    worker_dsn = make_role("worker")
    create_effects(conn, schema)  # sample_app's handlers write there
    conn.execute(
        sql.SQL("GRANT INSERT ON {} TO {}").format(
            sql.Identifier(schema, "effects"), sql.Identifier(user(worker_dsn))
        )
    )
    producer = App(make_role("producer"), schema=schema, strict_tasks=False)
    workers = Workers(worker_dsn, schema)
    try:
        proc = workers.start(
            "-q", "default", "-q", "periodic", "--concurrency", "4", env={"SAMPLE_PERIODIC": "1"}
        )
        workers.wait_registered(conn, proc)
        evals = [producer.enqueue("evaluate", [n]) for n in (1, 2)]
        summary = producer.enqueue("summarize", [evals], after=evals)
        raises = producer.enqueue("always_raises", max_attempts=2)
        assert producer.job(summary).result(timeout=20) == {"total": 30, "count": 2}
        with pytest.raises(JobFailed):
            producer.job(raises).result(timeout=20)
        assert job(conn, schema, raises)["attempt"] == 2
        ticks = (
            f'SELECT count(*) > 0 FROM "{schema}".all_jobs '
            "WHERE task = 'tick_latest' AND state = 'succeeded'"
        )
        wait_until(lambda: one(conn, ticks) == (True,), timeout=15, what="a periodic job run")
        proc.signal(signal.SIGTERM)
        assert proc.wait_exit() == 0
        assert "permission denied" not in proc.log(), proc.log()[-3000:]
    finally:
        workers.close()
        producer.close()
