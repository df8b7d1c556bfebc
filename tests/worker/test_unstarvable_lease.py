"""Promise 6: a live worker's job is never run twice, whatever its handler does.

Real ``pgqueue work`` processes (two, lease 2 s) run handlers that starve every thread of
their process for several leases: the GIL held in one C call (a backtracking regex, a
C loop, a foreign call through ctypes.PyDLL) or the event loop blocked. The heartbeat
sidecar process renews the lease meanwhile, so the job runs once, on attempt 1, and
succeeds. A frozen worker (SIGSTOP) still loses its job to the other one, and a killed
worker's sidecar exits with it.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import psycopg
import pytest

from pgqueue import App
from tests.helpers import wait_until
from tests.worker.procs import Workers, holder_pid, job, wait_state

Conn = psycopg.Connection[Any]
HOG = "tests.worker.hog_app:app"
LEASE = "2"
ARGS = ("--lease", LEASE, "--poll-interval", "0.5")


def notes(conn: Conn, schema: str, job_id: int) -> list[tuple[int, int, str]]:
    return conn.execute(
        f'SELECT attempt, worker_pid, note FROM "{schema}".effects WHERE job_id = %s ORDER BY at',
        (job_id,),
    ).fetchall()


def sidecars(conn: Conn, worker_id: str) -> int:
    (n,) = conn.execute(  # type: ignore[misc]
        "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE %s",
        (f"%pgqueue heartbeat {worker_id}%",),
    ).fetchone()
    return int(n)


@pytest.mark.parametrize(
    ("task", "args"),
    [
        # each holds its worker for ~3 leases or more on this machine (more under load)
        pytest.param("hog", ["regex", 27], id="regex-holds-the-gil"),
        pytest.param("hog", ["c_loop", 300_000_000], id="c-busy-loop-holds-the-gil"),
        pytest.param("hog", ["c_sleep", 7], id="ctypes-call-holds-the-gil"),
        pytest.param("hog_async", [7.0], id="blocked-event-loop"),
    ],
)
def test_a_handler_that_starves_its_worker_keeps_its_lease_and_runs_once(
    qapp: App, conn: Conn, schema: str, workers: Workers, task: str, args: list[Any]
) -> None:
    ws = [workers.start(*ARGS, name=f"w{i}", app=HOG) for i in range(2)]
    workers.wait_registered(conn, *ws)
    job_id = qapp.enqueue(task, args)
    row = wait_state(conn, schema, job_id, "succeeded", timeout=90)
    assert (row["attempt"], row["lost_count"], row["error_count"]) == (1, 0, 0)
    pid = row["result"]["pid"]
    assert notes(conn, schema, job_id) == [(1, pid, "start"), (1, pid, "end")]
    assert row["errors"] == []


def test_a_frozen_worker_still_loses_its_job_to_the_other(
    qapp: App, conn: Conn, schema: str, workers: Workers
) -> None:
    ws = [workers.start(*ARGS, name=f"w{i}", app=HOG) for i in range(2)]
    workers.wait_registered(conn, *ws)
    job_id = qapp.enqueue("hog", ["c_sleep", 4])
    wait_until(lambda: notes(conn, schema, job_id), what="the handler started")
    frozen = workers.by_pid(holder_pid(job(conn, schema, job_id)["worker_id"]))
    (other,) = [w for w in ws if w is not frozen]
    os.kill(frozen.pid, signal.SIGSTOP)  # its sidecar lives on, but renews no more
    try:
        row = wait_state(conn, schema, job_id, "succeeded", timeout=60)
    finally:
        os.kill(frozen.pid, signal.SIGCONT)
    assert row["attempt"] == 2 and row["lost_count"] == 1
    assert row["result"]["pid"] == other.pid
    assert [e["kind"] for e in row["errors"]] == ["lost"]
    # thawed, the frozen worker learns the lease is gone and throws its result away
    frozen.wait_log(rf"job {job_id} hog attempt 1: lease lost .*result discarded", timeout=30)
    assert job(conn, schema, job_id)["result"]["pid"] == other.pid


def test_a_killed_workers_sidecar_exits_with_it(
    qapp: App, conn: Conn, schema: str, workers: Workers
) -> None:
    w = workers.start(*ARGS, app=HOG)
    workers.wait_registered(conn, w)
    (worker_id,) = [r[0] for r in conn.execute(f'SELECT id FROM "{schema}".workers')]
    wait_until(lambda: sidecars(conn, worker_id) == 1, what="the sidecar connected")
    os.kill(w.pid, signal.SIGKILL)
    wait_until(lambda: sidecars(conn, worker_id) == 0, what="the sidecar gone")


def test_a_sidecar_that_dies_is_started_again_and_the_lease_holds(
    qapp: App, conn: Conn, schema: str, workers: Workers
) -> None:
    w = workers.start(*ARGS, app=HOG)
    workers.wait_registered(conn, w)
    (worker_id,) = [r[0] for r in conn.execute(f'SELECT id FROM "{schema}".workers')]
    wait_until(lambda: sidecars(conn, worker_id) == 1, what="the sidecar connected")
    job_id = qapp.enqueue("slow", [6.0])  # three leases
    wait_until(lambda: notes(conn, schema, job_id) or job(conn, schema, job_id)["state"]
               == "running", what="the job running")  # fmt: skip
    (sidecar,) = [p for p in w.children() if "sidecar.py" in _cmdline(p)]
    os.kill(sidecar, signal.SIGKILL)
    w.wait_log("the heartbeat sidecar exited .*starting a new one")
    row = wait_state(conn, schema, job_id, "succeeded", timeout=30)
    assert (row["attempt"], row["lost_count"]) == (1, 0)
    assert sidecars(conn, worker_id) == 1


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""
