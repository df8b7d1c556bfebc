"""pgqueue behind pgbouncer (Debian's 1.18, installed by .ci/run): transaction mode with
its default settings, with ``ignore_startup_parameters = options``, and session mode.

What a user gets with the DSN pointing at pgbouncer and nothing else set: enqueue (App
pool, async, batches, SQLAlchemy session, SQL), real workers (claims, completions,
heartbeats, the reaper, periodic jobs), results, cancel, retry, pause and the CLI, with
no errors and every job run exactly once. LISTEN cannot work through transaction mode:
workers and result waiters find out and poll; ``--listen-dsn`` (a direct connection)
gives them wake-ups again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from pgqueue import App, JobSpec
from pgqueue.pooler import behind_pooler, worker_settings
from pgqueue.pooler import execute as pooler_execute
from tests.helpers import wait_until
from tests.pgbouncer import PgBouncer, available
from tests.worker.procs import ROOT, Workers, wait_state

pytestmark = pytest.mark.skipif(not available(), reason="pgbouncer is not installed")

# What must never appear in a worker's log behind pgbouncer.
TROUBLE = re.compile(
    r"prepared statement|claim failed|could not be written|heartbeat failed|"
    r"unsupported startup parameter|Traceback|service .* failed"
)


@pytest.fixture
def bouncer(pg_dsn: str) -> Iterator[PgBouncer]:
    with PgBouncer(pg_dsn, mode="transaction") as b:
        yield b
        # No LISTEN went through it: a server connection left listening gets every
        # notification while idle, and clients that get it next can hang.
        log = b.log_tail(100_000)
        assert "when not linked" not in log, log[-3000:]


@pytest.fixture
def bapp(bouncer: PgBouncer, schema: str) -> Iterator[App]:
    """An App whose DSN is pgbouncer's, and nothing else set."""
    application = App(bouncer.dsn, schema=schema, strict_tasks=False)
    yield application
    application.close()


def _counts(conn: psycopg.Connection[Any], schema: str) -> dict[str, int]:
    rows = conn.execute(f'SELECT state, count(*) FROM "{schema}".all_jobs GROUP BY 1').fetchall()
    return {str(s): int(n) for s, n in rows}


def test_pgbouncer_is_detected_whatever_it_does_with_options(
    pg_dsn: str, bouncer: PgBouncer
) -> None:
    assert behind_pooler(bouncer.dsn) is True  # options refused
    with PgBouncer(pg_dsn, extra="ignore_startup_parameters = options") as ignoring:
        assert behind_pooler(ignoring.dsn) is True  # options dropped silently
    assert behind_pooler(pg_dsn) is False


def test_worker_settings_travel_with_each_transaction(bouncer: PgBouncer) -> None:
    """Startup options cannot pass pgbouncer: the worker's settings go with each claim and
    completion, in its transaction, and stay there (the server connection is shared)."""

    async def check() -> tuple[list[Any], list[Any]]:
        conn = await psycopg.AsyncConnection.connect(
            bouncer.dsn, autocommit=True, prepare_threshold=None
        )
        async with conn:
            sql = (
                "SELECT current_setting('jit'), current_setting('lock_timeout'), "
                "current_setting('synchronous_commit')"
            )
            cur = await pooler_execute(conn, sql, settings=worker_settings(fast_claims=True))
            inside = list(await cur.fetchall())
            cur = await conn.execute(sql)
            return inside, list(await cur.fetchall())

    inside, after = asyncio.run(check())
    assert inside == [("off", "10s", "off")]
    assert after != inside and after[0][2] == "on"


def test_every_enqueue_path_and_admin_through_pgbouncer(
    bapp: App, bouncer: PgBouncer, conn: psycopg.Connection[Any], schema: str
) -> None:
    ids = [bapp.enqueue("record", args=[i]).id for i in range(200)]  # prepare_threshold is 5
    ids += [j.id for j in bapp.enqueue_many([JobSpec("record", [i]) for i in range(40)])]
    ids += [j.id for j in bapp.enqueue_batch("record", [[i] for i in range(10)])]

    async def async_side() -> list[int]:
        out = [(await bapp.enqueue_async("record", args=[i])).id for i in range(30)]
        await bapp.aclose()
        return out

    ids += asyncio.run(async_side())
    # The application's own SQLAlchemy session through pgbouncer: its engine disables
    # prepared statements as pgbouncer's docs ask (its own queries would clash too).
    engine = create_engine(
        f"postgresql+psycopg://{bouncer.user}@127.0.0.1:{bouncer.port}/{bouncer.dbname}",
        connect_args={"prepare_threshold": None},
    )
    try:
        for i in range(20):
            with Session(engine) as session, session.begin():
                ids.append(bapp.enqueue("record", args=[i], connection=session).id)
    finally:
        engine.dispose()
    with psycopg.connect(bouncer.dsn, autocommit=True, prepare_threshold=None) as b:
        for i in range(20):
            row = b.execute(
                f"SELECT \"{schema}\".enqueue('record', %s::jsonb)", (f"[{i}]",)
            ).fetchone()
            assert row is not None
            ids.append(int(row[0]))
    assert len(set(ids)) == 320
    assert _counts(conn, schema) == {"queued": 320}

    # Admin through pgbouncer: cancel, pause/resume, retry, status.
    admin = bapp.admin
    for job_id in ids[:10]:
        admin.cancel(job_id)
    admin.pause("default")
    admin.resume("default")
    assert _counts(conn, schema) == {"queued": 310, "cancelled": 10}
    for job_id in ids[:10]:
        admin.retry(job_id)
    assert _counts(conn, schema) == {"queued": 320}


def test_two_workers_through_pgbouncer_run_2000_jobs_exactly_once(
    bapp: App,
    bouncer: PgBouncer,
    workers: Workers,
    conn: psycopg.Connection[Any],
    schema: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    workers.dsn = bouncer.dsn
    w1 = workers.start("--concurrency", "8", "--lease", "6")
    w2 = workers.start("--concurrency", "8", "--lease", "6", "--prefetch", "20")
    workers.wait_registered(conn, w1, w2, timeout=30)
    for w in (w1, w2):  # found out once, said once
        w.wait_log("notifications do not arrive through the connection pooler", timeout=15)
    ids: list[int] = []
    for start in range(0, 2000, 250):
        ids += [
            j.id for j in bapp.enqueue_batch("record", [[i] for i in range(start, start + 250)])
        ]
    # A result waited for through pgbouncer: re-read on a timer, not after 30 s.
    with caplog.at_level(logging.WARNING, logger="pgqueue.results"):
        assert bapp.job(ids[-1]).result(timeout=60)["attempt"] == 1
    said = [r for r in caplog.records if "job results are re-read every 0.5 s" in r.message]
    assert len(said) == 1, caplog.text
    wait_until(
        lambda: _counts(conn, schema).get("succeeded") == 2000,
        timeout=120,
        interval=0.2,
        what="2,000 jobs succeeded",
    )
    per_job = dict(
        conn.execute(f'SELECT job_id, count(*) FROM "{schema}".effects GROUP BY job_id').fetchall()
    )
    assert len(per_job) == 2000 and set(per_job.values()) == {1}, "a job ran twice or never"
    for w in (w1, w2):
        assert w.proc.poll() is None, w.log()[-3000:]
        assert not TROUBLE.search(w.log()), w.log()[-3000:]
        assert w.log().count("notifications do not arrive") == 1


def test_reaper_heartbeat_and_periodic_through_pgbouncer(
    bapp: App, bouncer: PgBouncer, workers: Workers, conn: psycopg.Connection[Any], schema: str
) -> None:
    # A crashed worker's job, faked with a row: running, its lease expired long ago.
    job_id = bapp.enqueue("record", args=["orphan"]).id
    conn.execute(
        f"UPDATE \"{schema}\".jobs SET state = 'running', attempt = 1, "
        "worker_id = 'gone:1:x', lease_expires_at = now() - interval '1 minute', "
        "started_at = now() - interval '2 minutes' WHERE id = %s",
        (job_id,),
    )
    workers.dsn = bouncer.dsn
    w = workers.start("--lease", "3", "--queue", "default", "--queue", "periodic",
                      env={"SAMPLE_PERIODIC": "1"})  # fmt: skip
    row = wait_state(conn, schema, job_id, "succeeded", timeout=30)
    assert row["attempt"] == 2  # reaped, then run again
    slow = bapp.enqueue("slow", args=[5]).id  # outlives its 3 s lease: heartbeats renew it
    wait_until(
        lambda: (
            conn.execute(
                f"SELECT count(*) FROM \"{schema}\".all_jobs WHERE task = 'tick_latest' "
                "AND state = 'succeeded'"
            ).fetchone()[0]  # type: ignore[index]
            >= 2
        ),
        timeout=30,
        what="two periodic ticks ran",
    )
    done = wait_state(conn, schema, slow, "succeeded", timeout=30)
    assert done["attempt"] == 1
    # Cancelling a running job: its NOTIFY cannot arrive, the next heartbeat carries it.
    victim = bapp.enqueue("slow_async", args=[60]).id  # cancelled as an asyncio task
    wait_state(conn, schema, victim, "running", timeout=30)
    assert bapp.admin.cancel(victim) == {victim: "cancelling"}
    wait_state(conn, schema, victim, "cancelled", timeout=30)
    assert not TROUBLE.search(w.log()), w.log()[-3000:]


def test_listen_dsn_restores_wakeups_and_session_mode_listens(
    pg_dsn: str, bouncer: PgBouncer, workers: Workers, conn: psycopg.Connection[Any], schema: str
) -> None:
    workers.dsn = bouncer.dsn
    direct = workers.start("--listen-dsn", pg_dsn, "--poll-interval", "3600", name="direct")
    with PgBouncer(pg_dsn, mode="session") as session_mode:
        workers.dsn = session_mode.dsn
        sess = workers.start("--poll-interval", "3600", name="session")
        sess.wait_log("notifications arrive through the connection pooler", timeout=20)
        workers.wait_registered(conn, direct, sess, timeout=30)
        app = App(bouncer.dsn, schema=schema, strict_tasks=False, listen_dsn=pg_dsn)
        try:
            # With an hour between polls, only a NOTIFY can wake either worker.
            for i in range(10):
                job = app.enqueue("record", args=[i])
                assert job.result(timeout=20) is not None
        finally:
            app.close()
        pids = {r[0] for r in conn.execute(f'SELECT worker_pid FROM "{schema}".effects')}
        assert pids <= {direct.pid, sess.pid}
        for w in (direct, sess):
            assert "do not arrive" not in w.log()
            assert not TROUBLE.search(w.log()), w.log()[-3000:]


def test_cli_through_pgbouncer(bouncer: PgBouncer, schema: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGQUEUE_")}
    env.update(PGQUEUE_DSN=bouncer.dsn, PGQUEUE_SCHEMA=schema)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pgqueue.cli", *args],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    for _ in range(7):  # past psycopg's prepare threshold
        out = run("enqueue", "record", "--args", "[1]")
        assert out.returncode == 0, out.stderr
    out = run("status", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)[0]["queued"] == 7
    out = run("jobs", "list")
    assert out.returncode == 0 and "record" in out.stdout, out.stderr
