"""A fleet behind pgbouncer: 16 worker processes against a PostgreSQL that allows only
30 connections, where each would need 4-5 direct ones (70+ in all). pgbouncer in
transaction mode multiplexes them onto at most 20 server connections; 20,000 jobs drain
exactly once and no process fails or restarts."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgqueue import App
from pgqueue.migrate import upgrade
from tests.helpers import wait_until
from tests.pgbouncer import PgBouncer, available
from tests.pgcluster import PgCluster
from tests.worker.procs import Workers, create_effects
from tests.worker.test_pgbouncer import TROUBLE

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not available(), reason="pgbouncer is not installed"),
]

JOBS = 20_000
WORKERS = 16


def _succeeded(conn: psycopg.Connection[Any], schema: str) -> int:
    row = conn.execute(
        f"SELECT count(*) FROM \"{schema}\".all_jobs WHERE state = 'succeeded'"
    ).fetchone()
    return int(row[0]) if row else 0


def test_sixteen_workers_through_pgbouncer_on_30_server_connections(tmp_path: Path) -> None:
    cluster = PgCluster(tmp_path / "pg")
    try:
        cluster.init()
        with (cluster.datadir / "postgresql.conf").open("a") as f:
            f.write("max_connections = 30\n")
        cluster.start()
        schema = "fleet_" + uuid.uuid4().hex[:8]
        upgrade(cluster.dsn, schema)
        with psycopg.connect(cluster.dsn, autocommit=True) as conn:
            create_effects(conn, schema)
            assert conn.execute("SHOW max_connections").fetchone() == ("30",)
            with PgBouncer(cluster.dsn, pool_size=20) as bouncer:
                app = App(bouncer.dsn, schema=schema, strict_tasks=False)
                try:
                    for start in range(0, JOBS, 5_000):
                        app.enqueue_batch("record", [[i] for i in range(start, start + 5_000)])
                finally:
                    app.close()
                fleet = Workers(bouncer.dsn, schema)
                try:
                    procs = [fleet.start("--concurrency", "4") for _ in range(WORKERS)]
                    peak = 0

                    def drained() -> bool:
                        nonlocal peak
                        row = conn.execute("SELECT count(*) FROM pg_stat_activity").fetchone()
                        peak = max(peak, int(row[0]) if row else 0)
                        return _succeeded(conn, schema) == JOBS

                    wait_until(drained, timeout=600, interval=0.5, what=f"{JOBS} jobs succeeded")
                    per_job = conn.execute(
                        f"SELECT count(*), count(DISTINCT job_id), count(DISTINCT worker_pid) "
                        f'FROM "{schema}".effects'
                    ).fetchone()
                    assert per_job is not None
                    runs, distinct, pids = per_job
                    print(f"{runs} runs of {distinct} jobs by {pids} processes; peak "
                          f"{peak} server backends (max_connections 30)")  # fmt: skip
                    assert runs == distinct == JOBS, "a job ran twice or never"
                    assert pids == WORKERS, "every process took part"
                    for p in procs:
                        assert p.proc.poll() is None, p.log()[-3000:]
                        assert not TROUBLE.search(p.log()), p.log()[-3000:]
                        assert "too many clients" not in p.log()
                finally:
                    fleet.close()
    finally:
        cluster.destroy()
