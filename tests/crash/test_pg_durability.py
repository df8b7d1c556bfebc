"""Promise 1: an acknowledged enqueue survives kill -9 of the PostgreSQL postmaster."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

from pgqueue import App
from tests.pgcluster import PgCluster

PG15_BIN = Path("/usr/lib/postgresql/15/bin")
JOBS = 1000


@pytest.mark.crash
@pytest.mark.parametrize(
    "bin_dir",
    [
        pytest.param(None, id="pg18-embedded"),
        pytest.param(
            PG15_BIN,
            id="pg15-system",
            marks=pytest.mark.skipif(
                not (PG15_BIN / "initdb").exists(), reason="no system PostgreSQL 15"
            ),
        ),
    ],
)
def test_acknowledged_jobs_survive_postmaster_kill(bin_dir: Path | None) -> None:
    datadir = Path(tempfile.mkdtemp(prefix="pgq"))
    cluster = PgCluster(datadir, bin_dir=bin_dir)
    try:
        cluster.init()
        cluster.start()
        with psycopg.connect(cluster.dsn) as c:
            settings = c.execute(
                "SELECT current_setting('fsync'), current_setting('synchronous_commit'), "
                "pg_postmaster_start_time()"
            ).fetchone()
        assert settings is not None and settings[:2] == ("on", "on")
        started_before = settings[2]

        app = App(cluster.dsn, schema="pgqueue", strict_tasks=False)
        try:
            app.migrate()
            t0 = time.monotonic()
            acknowledged = {app.enqueue("durable.job", [i]): i for i in range(JOBS)}
            print(f"{JOBS} single enqueues: {time.monotonic() - t0:.2f}s")
            assert len(acknowledged) == JOBS
            # Kill with pgqueue's pool connections still open, as in a real crash.
            cluster.kill_postmaster()
        finally:
            app.close()
        cluster.start()

        with psycopg.connect(cluster.dsn) as c:
            row = c.execute("SELECT pg_postmaster_start_time()").fetchone()
            assert row is not None and row[0] > started_before  # really a new server
            rows = c.execute(
                "SELECT id, (args->>0)::int, state FROM pgqueue.all_jobs ORDER BY id"
            ).fetchall()
        assert {job_id: i for job_id, i, _ in rows} == acknowledged
        assert {state for _, _, state in rows} == {"queued"}
        assert "not properly shut down" in cluster.log_tail(200)  # crash recovery ran
    finally:
        cluster.destroy()
        shutil.rmtree(datadir, ignore_errors=True)
