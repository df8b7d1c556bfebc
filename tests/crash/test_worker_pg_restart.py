"""kill -9 PostgreSQL under two busy worker processes, restart it: the workers reconnect on
their own (same processes, no restart) and every job ends succeeded."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pgqueue import App, JobSpec
from pgqueue.migrate import upgrade
from tests.helpers import wait_until
from tests.pgcluster import PgCluster
from tests.worker.procs import Workers, create_effects

pytestmark = pytest.mark.crash

SCHEMA = "pgq_crash"


@pytest.fixture
def cluster() -> Iterator[PgCluster]:
    datadir = Path(tempfile.mkdtemp(prefix="pgqw"))
    pg = PgCluster(datadir / "data")
    try:
        pg.init()
        pg.start()
        yield pg
    finally:
        pg.destroy()
        shutil.rmtree(datadir, ignore_errors=True)


def _states(dsn: str) -> dict[str, int]:
    try:
        with psycopg.connect(dsn, connect_timeout=2) as conn:
            rows = conn.execute(f"SELECT state, count(*) FROM {SCHEMA}.all_jobs GROUP BY state")
            return {state: n for state, n in rows}
    except psycopg.OperationalError:
        return {}


def test_workers_ride_out_a_postgres_kill_and_finish_every_job(cluster: PgCluster) -> None:
    upgrade(cluster.dsn, SCHEMA)
    with psycopg.connect(cluster.dsn, autocommit=True) as conn:
        create_effects(conn, SCHEMA)
    app = App(cluster.dsn, schema=SCHEMA, strict_tasks=False)
    workers = Workers(cluster.dsn, SCHEMA)
    try:
        ws = [
            workers.start(
                "--concurrency", "4", "--lease", "5", "--poll-interval", "0.5", name=f"w{i}"
            )
            for i in range(2)
        ]
        with psycopg.connect(cluster.dsn, autocommit=True) as conn:
            workers.wait_registered(conn, *ws)
        ids = app.enqueue_many(JobSpec("slow", (0.05,)) for _ in range(300))
        app.close()
        wait_until(
            lambda: _states(cluster.dsn).get("succeeded", 0) >= 60,
            timeout=20,
            what="some jobs done before the crash",
        )
        cluster.kill_postmaster()
        down = time.monotonic()
        cluster.start()
        with psycopg.connect(cluster.dsn) as conn:
            (restarted,) = conn.execute("SELECT now()").fetchone()
        print(f"PostgreSQL down for {time.monotonic() - down:.2f}s")
        wait_until(
            lambda: _states(cluster.dsn) == {"succeeded": len(ids)},
            timeout=60,
            interval=0.2,
            what="every job succeeded after the restart",
        )
        for w in ws:
            assert w.proc.poll() is None, f"{w.name} exited"
        with psycopg.connect(cluster.dsn) as conn:
            # Each job ran at least once; at least one of the runs is the one that completed.
            missing = conn.execute(
                f"SELECT count(*) FROM {SCHEMA}.all_jobs j WHERE NOT EXISTS (SELECT 1 FROM "
                f"{SCHEMA}.effects e WHERE e.job_id = j.id AND e.attempt = j.attempt)"
            ).fetchone()
            assert missing == (0,)

            # Both workers heartbeat again.
            def beating() -> set[int]:
                sql = f"SELECT pid FROM {SCHEMA}.workers WHERE last_heartbeat_at > %s"
                return {r[0] for r in conn.execute(sql, (restarted,))}

            wait_until(
                lambda: beating() == {w.pid for w in ws},
                timeout=10,
                what="both workers heartbeating after the restart",
            )
    finally:
        workers.close()
        app.close()
