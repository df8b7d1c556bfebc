"""A long job killed midway resumes from its last checkpoint on the next attempt."""

from __future__ import annotations

import os
import signal
from typing import Any

import psycopg
import pytest

from pgqueue import App
from tests.helpers import wait_until
from tests.worker.procs import Workers, holder_pid, job, wait_state

pytestmark = pytest.mark.crash

Conn = psycopg.Connection[Any]
ARGS = ("--lease", "2", "--poll-interval", "0.5")


def test_a_job_of_10_steps_killed_after_step_7_resumes_at_step_8(
    qapp: App, conn: Conn, schema: str, workers: Workers
) -> None:
    ws = [workers.start(*ARGS, name=f"w{i}", app="tests.worker.hog_app:app") for i in range(2)]
    workers.wait_registered(conn, *ws)
    job_id = qapp.enqueue("steps", [10, 7])
    wait_until(
        lambda: job(conn, schema, job_id)["checkpoint"] == {"next": 8},
        timeout=30,
        what="step 7 checkpointed",
    )
    victim = workers.by_pid(holder_pid(job(conn, schema, job_id)["worker_id"]))
    (survivor,) = [w for w in ws if w is not victim]
    os.kill(victim.pid, signal.SIGKILL)
    assert victim.wait_exit(5) == -signal.SIGKILL
    row = wait_state(conn, schema, job_id, "succeeded", timeout=30)
    assert (row["attempt"], row["lost_count"]) == (2, 1)
    assert row["result"] == {"resumed_at": 8}
    assert row["checkpoint"] == {"next": 11}
    runs = conn.execute(
        f'SELECT attempt, worker_pid, note FROM "{schema}".effects WHERE job_id = %s ORDER BY at',
        (job_id,),
    ).fetchall()
    assert runs == [(1, victim.pid, f"step {k}") for k in range(1, 8)] + [
        (2, survivor.pid, f"step {k}") for k in range(8, 11)
    ]
