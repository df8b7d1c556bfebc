"""Workers killed or frozen for real (SIGKILL, SIGSTOP): leases expire, the reaper hands the
job to another worker, the frozen worker's late completion is fenced off."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import psycopg
import pytest

from pgqueue import App
from tests.helpers import wait_until
from tests.worker.procs import WorkerProc, Workers, effects, holder_pid, job

pytestmark = pytest.mark.crash

Conn = psycopg.Connection[Any]
LEASE = 2.0
REAPER_INTERVAL = 1.0  # WorkerConfig.maintenance_interval's default; `work` has no flag for it
FAST = ("--lease", str(LEASE), "--poll-interval", "0.5")


def wait_running(conn: Conn, schema: str, job_id: int, attempt: int = 1) -> dict[str, Any]:
    def current() -> tuple[str, int]:
        row = job(conn, schema, job_id)
        return row["state"], row["attempt"]

    wait_until(
        lambda: current() == ("running", attempt),
        timeout=10,
        what=f"job {job_id} attempt {attempt} running",
    )
    return job(conn, schema, job_id)


def test_killed_worker_job_is_finished_by_another_within_lease_and_reaper(
    qapp: App, conn: Conn, schema: str, workers: Workers
) -> None:
    ws = [workers.start(*FAST, name="a"), workers.start(*FAST, name="b")]
    workers.wait_registered(conn, *ws)
    job_id = qapp.enqueue("slow", [60.0], {"later": 0.2})
    victim = workers.by_pid(holder_pid(wait_running(conn, schema, job_id)["worker_id"]))
    (survivor,) = [w for w in ws if w is not victim]
    victim_id = job(conn, schema, job_id)["worker_id"]
    os.kill(victim.pid, signal.SIGKILL)
    killed = time.monotonic()
    assert victim.wait_exit(5) == -signal.SIGKILL
    wait_until(
        lambda: job(conn, schema, job_id)["state"] == "succeeded",
        timeout=LEASE + REAPER_INTERVAL + 5,
        interval=0.05,
        what="job finished elsewhere",
    )
    took = time.monotonic() - killed
    assert took < LEASE + REAPER_INTERVAL + 2.0, f"took {took:.1f}s"
    row = job(conn, schema, job_id)
    assert (row["attempt"], row["lost_count"], row["error_count"]) == (2, 1, 0)
    (lost,) = row["errors"]
    assert (lost["kind"], lost["attempt"], lost["worker"]) == ("lost", 1, victim_id)
    assert "lease lost" in lost["message"]
    assert row["result"] == {"pid": survivor.pid, "attempt": 2}
    assert effects(conn, schema, job_id) == [(2, survivor.pid, False)]


def _freeze(proc: WorkerProc, conn: Conn) -> None:
    """SIGSTOP ``proc``, but never while it holds the maintenance lock: frozen inside its
    reaper transaction it would keep every other worker from reaping until it thaws."""
    for _ in range(20):
        os.kill(proc.pid, signal.SIGSTOP)
        held = conn.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND a.application_name = %s",
            (proc.name,),
        ).fetchone()
        if held == (0,):
            return
        os.kill(proc.pid, signal.SIGCONT)
        time.sleep(0.05)
    raise AssertionError(f"{proc.name} kept holding the maintenance lock")


def test_frozen_worker_past_its_lease_cannot_complete_the_reclaimed_job(
    qapp: App, conn: Conn, schema: str, workers: Workers
) -> None:
    ws = [workers.start(*FAST, name="a"), workers.start(*FAST, name="b")]
    workers.wait_registered(conn, *ws)
    job_id = qapp.enqueue("slow", [5.0], {"later": 1.0})
    zombie = workers.by_pid(holder_pid(wait_running(conn, schema, job_id)["worker_id"]))
    (other,) = [w for w in ws if w is not zombie]
    _freeze(zombie, conn)
    try:
        row = wait_running(conn, schema, job_id, attempt=2)
        assert holder_pid(row["worker_id"]) == other.pid
        wait_until(
            lambda: job(conn, schema, job_id)["state"] == "succeeded",
            timeout=10,
            what="the second worker finished the job",
        )
        done = job(conn, schema, job_id)
    finally:
        os.kill(zombie.pid, signal.SIGCONT)
    # Thawed, the first worker's handler returns (or learns from its heartbeat that the lease
    # is gone); either way its result is thrown away.
    zombie.wait_log(rf"job {job_id} slow attempt 1: lease lost .*result discarded", timeout=10)
    assert job(conn, schema, job_id) == done
    assert (done["attempt"], done["lost_count"], done["error_count"]) == (2, 1, 0)
    assert done["result"] == {"pid": other.pid, "attempt": 2}
    assert [e["kind"] for e in done["errors"]] == ["lost"]
    runs = effects(conn, schema, job_id)
    assert [r for r in runs if r[0] == 2] == [(2, other.pid, False)]
    assert all(r[:2] == (1, zombie.pid) for r in runs if r[0] != 2)
    assert zombie.proc.poll() is None  # the thawed worker lives on


def test_job_that_kills_its_worker_every_time_ends_failed_lost(
    qapp: App, conn: Conn, schema: str, workers: Workers
) -> None:
    sup = workers.start("--processes", "2", *FAST, name="supervisor")
    wait_until(lambda: len(workers.registered(conn)) == 2, timeout=20, what="2 workers up")
    job_id = qapp.enqueue("kill_self", max_attempts=3)
    wait_until(
        lambda: job(conn, schema, job_id)["state"] == "failed",
        timeout=40,
        interval=0.1,
        what="job failed after 3 lost leases",
    )
    row = job(conn, schema, job_id)
    assert (row["attempt"], row["lost_count"], row["error_count"]) == (3, 3, 0)
    assert [(e["kind"], e["attempt"]) for e in row["errors"]] == [
        ("lost", 1),
        ("lost", 2),
        ("lost", 3),
    ]
    assert row["finished_at"] is not None and row["lease_expires_at"] is None
    assert [r[0] for r in effects(conn, schema, job_id)] == [1, 2, 3]
    assert sup.proc.poll() is None  # the supervisor kept restarting its children
    assert sup.log().count("restarting in") >= 3
