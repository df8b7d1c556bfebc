"""Rolling deploys: a worker that does not know a job's task hands it back without using
an attempt, a worker that knows it runs it, and jobs of a task no live worker of the
queue has known for --unknown-task-timeout end failed (kind unknown_task) and show in
``pgqueue status``. Real worker processes of two app versions (tests.worker.sample_app
and sample_app_new), the in-process worker, and the sweep statement against races."""

from __future__ import annotations

import signal
import subprocess
import sys
from typing import Any

import psycopg

from pgqueue import App
from pgqueue.sql import query
from tests.helpers import wait_until
from tests.worker.inproc import running
from tests.worker.procs import ROOT, Workers, effects, job, wait_state

Conn = psycopg.Connection[Any]
NEW_APP = "tests.worker.sample_app_new:app"
FAST = ("--lease", "3", "--poll-interval", "0.5")


def unknown_rows(conn: Conn, schema: str) -> list[tuple[str, str]]:
    return conn.execute(
        f'SELECT queue, task FROM "{schema}".unknown_tasks ORDER BY 1, 2'
    ).fetchall()


def status(dsn: str, schema: str) -> str:
    """``pgqueue status`` as a user runs it."""
    proc = subprocess.run(
        [sys.executable, "-m", "pgqueue.cli", "--dsn", dsn, "--schema", schema, "status"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_old_worker_hands_a_new_task_back_and_a_new_worker_runs_it(
    qapp: App, conn: Conn, schema: str, workers: Workers
) -> None:
    old = workers.start("--concurrency", "4", *FAST, name="old")
    workers.wait_registered(conn, old)
    job_id = qapp.enqueue("new_task", [7])
    known = qapp.enqueue("record", [1])
    # The old worker claims it and hands it back, once: then its claims skip the task, so
    # that it does not keep winning the job from the new workers (job_claim_batch).
    row = wait_until(
        lambda: (r := job(conn, schema, job_id))["attempt"] >= 1 and r["state"] == "queued" and r,
        timeout=15,
        what="new_task handed back by the old worker",
    )
    assert (row["error_count"], row["lost_count"], row["errors"]) == (0, 0, [])
    assert unknown_rows(conn, schema) == [("default", "new_task")]
    assert wait_state(conn, schema, known, "succeeded")["result"]["pid"] == old.pid
    new = workers.start("--concurrency", "4", *FAST, name="new", app=NEW_APP)
    row = wait_state(conn, schema, job_id, "succeeded", timeout=60)
    assert row["result"] == {"pid": new.pid, "attempt": row["attempt"], "n": 7}
    assert (row["error_count"], row["lost_count"], row["errors"]) == (0, 0, [])
    assert [pid for _, pid, _ in effects(conn, schema, job_id)] == [new.pid]
    # the sweep forgets the note once a live worker of the queue knows the task
    wait_until(lambda: unknown_rows(conn, schema) == [], timeout=15, what="note deleted")
    assert old.proc.poll() is None and new.proc.poll() is None
    assert old.log().count("handed back") == 1 and "unknown_task" not in new.log()


def test_a_task_nobody_knows_fails_after_the_timeout_and_shows_in_status(
    qapp: App, pg_dsn: str, conn: Conn, schema: str, workers: Workers
) -> None:
    first = workers.start(*FAST, name="first")  # --unknown-task-timeout 1h (the default)
    (job_id,) = conn.execute(f'SELECT "{schema}".enqueue(%s)', ("nosuch.task",)).fetchone()
    wait_until(
        lambda: unknown_rows(conn, schema) == [("default", "nosuch.task")],
        timeout=15,
        what="nosuch.task noted as unknown",
    )
    text = status(pg_dsn, schema)
    assert "unknown tasks" in text and "nosuch.task" in text, text
    first.signal(signal.SIGTERM)
    assert first.wait_exit() == 0
    second = workers.start(*FAST, "--unknown-task-timeout", "2s", name="second")
    row = wait_state(conn, schema, job_id, "failed", timeout=30)
    assert (row["error_count"], row["lost_count"]) == (0, 0)
    (err,) = row["errors"]
    assert err["kind"] == "unknown_task"
    assert "nosuch.task" in err["message"] and "default" in err["message"]
    second.wait_log(r"failed \(unknown_task\)")
    text = status(pg_dsn, schema)
    line = next(x for x in text.splitlines() if "nosuch.task" in x)
    assert line.split()[:4] == ["default", "nosuch.task", "0", "1"], text  # 0 queued, 1 failed
    assert second.proc.poll() is None


def test_in_process_handed_back_with_growing_delays_then_failed(
    app: App, conn: Conn, schema: str
) -> None:
    @app.task(name="known")
    def known() -> None:
        pass

    (job_id,) = conn.execute(
        f'SELECT "{schema}".enqueue(%s, max_attempts => 1)', ("nosuch.task",)
    ).fetchone()
    delays: list[float] = []

    def handed_back(times: int) -> bool:
        row = conn.execute(
            "SELECT attempt, state, extract(epoch FROM run_at - now()) "
            f'FROM "{schema}".jobs WHERE id = %s',
            (job_id,),
        ).fetchone()
        assert row is not None
        if row[0] >= times and row[1] == "queued":
            delays.append(float(row[2]))
            return True
        return False

    with running(app, unknown_task_timeout=3600) as worker:
        wait_until(lambda: handed_back(1), what="first hand-back")
        assert worker.skip_tasks == ["nosuch.task"]  # its claims skip the task from now on
        assert worker.unknown_tasks.failed == 0
    conn.execute(f'UPDATE "{schema}".jobs SET run_at = now() WHERE id = %s', (job_id,))
    with running(app, unknown_task_timeout=3600):  # another old worker hands it back too
        wait_until(lambda: handed_back(2), what="second hand-back")
    row = job(conn, schema, job_id)
    assert (row["state"], row["error_count"], row["lost_count"], row["errors"]) == (
        "queued",
        0,
        0,
        [],
    )
    assert delays[1] > delays[0]  # 0.5 s, then 1 s: a worker that does not know it backs off
    # max_attempts 1 is not used up by hand-backs; the timeout ends it
    with running(app, unknown_task_timeout=1) as worker:
        row = wait_state(conn, schema, job_id, "failed", timeout=15)
        assert worker.unknown_tasks.failed == 1
    assert [e["kind"] for e in row["errors"]] == ["unknown_task"]


def sweep(conn: Conn, schema: str, timeout: float = 60, may_fail: bool = True) -> list[int]:
    rows = conn.execute(
        query(schema, "unknown_task_sweep"),
        {"key": f"{schema}.unknown_tasks", "timeout": timeout, "may_fail": may_fail, "limit": 100},
    ).fetchall()
    return sorted(r[0] for r in rows)


def test_sweep_never_fails_a_claimed_or_locked_job(pg_dsn: str, conn: Conn, schema: str) -> None:
    s = f'"{schema}"'
    ids = [
        conn.execute(f"SELECT {s}.enqueue('gone.task')").fetchone()[0]  # type: ignore[index]
        for _ in range(3)
    ]
    claimed, locked, due = ids
    conn.execute(
        f"UPDATE {s}.jobs SET state = 'running', attempt = 1, worker_id = 'w', "
        "lease_expires_at = now() + interval '1 minute' WHERE id = %s",
        (claimed,),
    )
    conn.execute(
        f"INSERT INTO {s}.unknown_tasks (queue, task, since) "
        "VALUES ('default', 'gone.task', now() - interval '2 hours')"
    )
    assert sweep(conn, schema, may_fail=False) == []  # this worker has not run for the timeout
    with psycopg.connect(pg_dsn) as other:  # a claim in progress holds the row
        other.execute(f"SELECT 1 FROM {s}.jobs WHERE id = %s FOR UPDATE", (locked,))
        assert sweep(conn, schema) == [due]
    states = dict(conn.execute(f"SELECT id, state FROM {s}.jobs").fetchall())
    assert states == {claimed: "running", locked: "queued", due: "failed"}


def test_sweep_forgets_a_task_a_live_worker_of_the_queue_knows(conn: Conn, schema: str) -> None:
    s = f'"{schema}"'
    job_id = conn.execute(f"SELECT {s}.enqueue('t.new')").fetchone()[0]  # type: ignore[index]
    conn.execute(
        f"INSERT INTO {s}.unknown_tasks (queue, task, since) VALUES "
        "('default', 't.new', now() - interval '2 hours'), ('other', 't.new', now())"
    )
    worker = (
        "INSERT INTO {s}.workers (id, host, pid, queues, concurrency, tasks) "
        "VALUES (%s, 'h', 1, %s, 1, %s)"
    )
    # knows the task, but works another queue: does not count for 'default'
    conn.execute(worker.format(s=s), ("a", ["other"], ["t.new"]))
    assert sweep(conn, schema) == [job_id]
    assert unknown_rows(conn, schema) == []  # 'other' known; 'default' settled (all failed)
    conn.execute(
        f"UPDATE {s}.jobs SET state = 'queued', errors = '[]', finished_at = NULL WHERE id = %s",
        (job_id,),
    )
    conn.execute(
        f"INSERT INTO {s}.unknown_tasks (queue, task, since) "
        "VALUES ('default', 't.new', now() - interval '2 hours')"
    )
    conn.execute(worker.format(s=s), ("b", ["default"], ["t.new", "t.other"]))
    assert sweep(conn, schema) == []
    assert unknown_rows(conn, schema) == []
    assert job(conn, schema, job_id)["state"] == "queued"


def test_hand_back_is_fenced_and_uses_no_attempt(conn: Conn, schema: str) -> None:
    s = f'"{schema}"'
    job_id = conn.execute(f"SELECT {s}.enqueue('t.x')").fetchone()[0]  # type: ignore[index]
    conn.execute(
        f"UPDATE {s}.jobs SET state = 'running', attempt = 3, error_count = 1, worker_id = 'w' "
        "WHERE id = %s",
        (job_id,),
    )
    params = {"ids": [job_id], "worker_id": "w", "base": 0.5, "cap": 30.0}
    stale = conn.execute(
        query(schema, "job_release_unknown_fenced"), {**params, "attempts": [2]}
    ).fetchall()
    other = conn.execute(
        query(schema, "job_release_unknown_fenced"),
        {**params, "attempts": [3], "worker_id": "v"},
    ).fetchall()
    assert stale == [] and other == [] and job(conn, schema, job_id)["state"] == "running"
    rows = conn.execute(
        query(schema, "job_release_unknown_fenced"), {**params, "attempts": [3]}
    ).fetchall()
    assert [(r[0], r[2]) for r in rows] == [(job_id, "queued")]
    row = job(conn, schema, job_id)
    assert (row["attempt"], row["error_count"], row["lost_count"], row["worker_id"]) == (
        3,
        1,
        0,
        None,
    )
    # 3 claims - 1 error = 2 that used no attempt: 0.5 * 2^(2-1) = 1 s
    wait = (row["run_at"] - conn.execute("SELECT now()").fetchone()[0]).total_seconds()  # type: ignore[index]
    assert 0.5 < wait <= 1.0
    assert unknown_rows(conn, schema) == [("default", "t.x")]


def test_hand_back_of_a_job_whose_cancellation_was_asked_ends_it_cancelled(
    conn: Conn, schema: str
) -> None:
    s = f'"{schema}"'
    job_id = conn.execute(f"SELECT {s}.enqueue('t.y')").fetchone()[0]  # type: ignore[index]
    conn.execute(
        f"UPDATE {s}.jobs SET state = 'running', attempt = 1, worker_id = 'w', "
        "cancel_requested_at = now() WHERE id = %s",
        (job_id,),
    )
    rows = conn.execute(
        query(schema, "job_release_unknown_fenced"),
        {"ids": [job_id], "attempts": [1], "worker_id": "w", "base": 0.5, "cap": 30.0},
    ).fetchall()
    assert [(r[0], r[2]) for r in rows] == [(job_id, "cancelled")]
    row = job(conn, schema, job_id)
    assert row["state"] == "cancelled" and row["finished_at"] is not None
    assert unknown_rows(conn, schema) == []  # nothing waits for a worker that knows t.y
