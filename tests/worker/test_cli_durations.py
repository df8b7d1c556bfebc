"""``pgqueue work`` as a real process takes its durations with units (the issue: `work
--keep-succeeded 7d` was refused while `prune --older-than 7d` was accepted)."""

from __future__ import annotations

from typing import Any

import psycopg

from pgqueue import App
from tests.helpers import wait_until
from tests.worker.procs import Workers, job

Conn = psycopg.Connection[Any]


def test_work_takes_durations_with_units(
    qapp: App, conn: Conn, schema: str, workers: Workers
) -> None:
    w = workers.start(
        "--lease", "1m30s", "--poll-interval", "500ms", "--shutdown-timeout", "1m",
        "--keep-succeeded", "7d", "--keep-failed", "4w", name="units",
    )  # fmt: skip
    w.wait_log(r"lease=90s")
    job_id = qapp.enqueue("record")
    wait_until(lambda: job(conn, schema, job_id)["state"] == "succeeded", what="job done")
    assert job(conn, schema, job_id)["lease_expires_at"] is None
