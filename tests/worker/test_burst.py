"""pgqueue work --burst: run what is due, then exit 0 (all succeeded) or 1."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import psycopg

from pgqueue import App
from tests.worker.procs import APP, ROOT, job

Conn = psycopg.Connection[Any]


def burst(pg_dsn: str, schema: str, *options: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGQUEUE_")}
    env.update(PGQUEUE_DSN=pg_dsn, PGQUEUE_SCHEMA=schema)  # sample_app's own App reads them
    return subprocess.run(
        [sys.executable, "-m", "pgqueue.cli", "--dsn", pg_dsn, "--schema", schema,
         "--app", APP, "work", "--burst", "--log-level", "warning", *options],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_burst_runs_what_is_due_and_exits_0(
    qapp: App, pg_dsn: str, conn: Conn, schema: str, effects_table: None
) -> None:
    due = [qapp.enqueue("record", [n]) for n in range(30)]
    grouped = qapp.enqueue("record", ["g"], group_key="tenant-a")  # the flow claim's
    later = qapp.enqueue("record", ["later"], delay=3600)
    done = burst(pg_dsn, schema, "-c", "4")
    assert done.returncode == 0, done.stderr
    summary = done.stderr.strip().splitlines()[-1]
    assert summary == "burst: 31 succeeded, 0 failed, 0 to retry, 0 lost"
    assert {job(conn, schema, j)["state"] for j in [*due, grouped]} == {"succeeded"}
    assert job(conn, schema, later)["state"] == "queued"  # scheduled: left for later
    rows = conn.execute(f'SELECT count(*) FROM "{schema}".workers').fetchone()
    assert rows == (0,)  # it stopped as after a SIGTERM: deregistered


def test_burst_exits_1_when_a_job_failed_or_will_retry(
    qapp: App, pg_dsn: str, conn: Conn, schema: str, effects_table: None
) -> None:
    ok = qapp.enqueue("record", [1])
    dead = qapp.enqueue("always_raises", max_attempts=1)
    retry = qapp.enqueue("always_raises", max_attempts=5)
    done = burst(pg_dsn, schema)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    # (the retrying job's backoff is 0.1 s: the burst may run it again before it stops)
    assert done.stderr.strip().splitlines()[-1].startswith("burst: 1 succeeded, ")
    assert job(conn, schema, ok)["state"] == "succeeded"
    assert job(conn, schema, dead)["state"] == "failed"
    assert job(conn, schema, retry)["error_count"] >= 1


def test_burst_with_nothing_to_do_exits_0_at_once(pg_dsn: str, schema: str) -> None:
    done = burst(pg_dsn, schema)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().endswith("burst: 0 succeeded, 0 failed, 0 to retry, 0 lost")


def test_burst_refuses_processes(pg_dsn: str, schema: str) -> None:
    done = burst(pg_dsn, schema, "--processes", "2")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "Error: --burst runs one worker process: drop --processes"
    ]
