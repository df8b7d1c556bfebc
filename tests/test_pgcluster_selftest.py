"""Self-test of tests/pgcluster.py: committed rows survive kill -9 of the postmaster."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

from tests.pgcluster import PgCluster

PG15_BIN = Path("/usr/lib/postgresql/15/bin")


@pytest.mark.crash
@pytest.mark.parametrize(
    "bin_dir",
    [
        pytest.param(None, id="pg18-pixeltable"),
        pytest.param(
            PG15_BIN,
            id="pg15-system",
            marks=pytest.mark.skipif(
                not (PG15_BIN / "initdb").exists(), reason="no system PostgreSQL 15"
            ),
        ),
    ],
)
def test_committed_rows_survive_postmaster_kill(bin_dir: Path | None) -> None:
    datadir = Path(tempfile.mkdtemp(prefix="pgq"))
    cluster = PgCluster(datadir, bin_dir=bin_dir)
    try:
        cluster.init()
        cluster.start()
        with psycopg.connect(cluster.dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
            for i in range(100):
                with conn.transaction():
                    conn.execute("INSERT INTO t VALUES (%s)", (i,))
            # Keep this connection open across the kill: its backend must not block restart.
            for cycle in range(2):
                t0 = time.monotonic()
                cluster.kill_postmaster()
                t1 = time.monotonic()
                cluster.start()
                t2 = time.monotonic()
                print(f"cycle {cycle}: kill {t1 - t0:.3f}s, restart {t2 - t1:.3f}s")
                with psycopg.connect(cluster.dsn) as conn2:
                    row = conn2.execute("SELECT count(*), min(id), max(id) FROM t").fetchone()
                assert row == (100, 0, 99)
    finally:
        cluster.destroy()
        shutil.rmtree(datadir, ignore_errors=True)
    assert not datadir.exists()
