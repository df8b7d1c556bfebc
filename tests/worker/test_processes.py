"""``pgqueue work`` as real processes (tests.worker.sample_app) against a real PostgreSQL:
many jobs exactly once, leases kept by heartbeats, polling without LISTEN, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

import psycopg
import pytest

from pgqueue import App, JobSpec
from tests.helpers import wait_until
from tests.worker.procs import Workers, effects, holder_pid, job

Conn = psycopg.Connection[Any]
FAST = ("--lease", "2", "--poll-interval", "0.5")


def count_states(conn: Conn, schema: str) -> dict[str, int]:
    rows = conn.execute(f'SELECT state, count(*) FROM "{schema}".all_jobs GROUP BY state')
    return {state: n for state, n in rows}


def test_two_processes_run_5000_jobs_exactly_once(
    qapp: App, conn: Conn, schema: str, workers: Workers
) -> None:
    sup = workers.start("--processes", "2", "--concurrency", "16", *FAST, name="supervisor")
    wait_until(lambda: len(workers.registered(conn)) == 2, timeout=20, what="2 workers registered")
    children = workers.registered(conn)
    ids = qapp.enqueue_many(JobSpec("record", (i,)) for i in range(5000))
    assert len(ids) == 5000
    wait_until(
        lambda: count_states(conn, schema) == {"succeeded": 5000},
        timeout=90,
        interval=0.2,
        what="5000 jobs succeeded",
    )
    per_job = conn.execute(
        "SELECT count(*), count(DISTINCT job_id), max(n), min(n) FROM "
        f'(SELECT job_id, count(*) AS n FROM "{schema}".effects GROUP BY job_id) AS e'
    ).fetchone()
    assert per_job == (5000, 5000, 1, 1)
    assert conn.execute(f'SELECT count(*) FROM "{schema}".effects').fetchone() == (5000,)
    assert conn.execute(
        f'SELECT min(attempt), max(attempt), sum(error_count + lost_count) FROM "{schema}".all_jobs'
    ).fetchone() == (1, 1, 0)
    pids = {r[0] for r in conn.execute(f'SELECT DISTINCT worker_pid FROM "{schema}".effects')}
    assert pids == children, "both worker processes did work"
    # SIGTERM to the supervisor reaches both children; they leave the workers table.
    sup.signal(signal.SIGTERM)
    assert sup.wait_exit(20) == 0
    assert workers.registered(conn) == set()


def test_job_running_several_leases_is_never_claimed_twice(
    qapp: App, conn: Conn, schema: str, workers: Workers
) -> None:
    a = workers.start("--concurrency", "2", *FAST, name="a")
    b = workers.start("--concurrency", "2", *FAST, name="b")
    workers.wait_registered(conn, a, b)
    # 7 s = 3.5 leases: a sync handler in a thread, and an async one that blocks the loop.
    ids = [qapp.enqueue("slow", [7.0]), qapp.enqueue("blocking_async", [7.0])]
    wait_until(
        lambda: all(job(conn, schema, i)["state"] == "running" for i in ids),
        what="both jobs running",
    )
    for job_id in ids:
        wait_until(
            lambda: job(conn, schema, job_id)["state"] == "succeeded",  # noqa: B023
            timeout=15,
            interval=0.1,
            what=f"job {job_id} succeeded",
        )
        row = job(conn, schema, job_id)
        assert (row["attempt"], row["lost_count"], row["error_count"], row["errors"]) == (
            1,
            0,
            0,
            [],
        )
        assert len(effects(conn, schema, job_id)) == 1
        assert (row["finished_at"] - row["started_at"]).total_seconds() >= 7.0
    assert "lease expired" not in workers.logs()


def test_no_listen_picks_up_within_the_poll_interval(
    qapp: App, conn: Conn, schema: str, workers: Workers
) -> None:
    w = workers.start("--no-listen", "--poll-interval", "0.5", name="poller")
    workers.wait_registered(conn, w)
    listening = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE %s", (f'LISTEN "{schema}_%',)
    ).fetchone()
    assert listening == (0,)
    first = qapp.enqueue("record")
    wait_until(lambda: job(conn, schema, first)["state"] == "succeeded", what="first job done")
    latencies = []
    for _ in range(3):
        time.sleep(0.15)  # let the worker go back to sleep between polls
        job_id = qapp.enqueue("record")
        wait_until(
            lambda: job(conn, schema, job_id)["state"] == "succeeded",  # noqa: B023
            timeout=3,
            what="job picked up by polling",
        )
        row = job(conn, schema, job_id)
        latencies.append((row["started_at"] - row["created_at"]).total_seconds())
    assert max(latencies) < 0.5 + 0.5, latencies


def test_sigterm_lets_running_jobs_finish_and_claims_nothing_more(
    qapp: App, conn: Conn, schema: str, workers: Workers
) -> None:
    w = workers.start("--concurrency", "3", "--shutdown-timeout", "20", *FAST, name="w")
    workers.wait_registered(conn, w)
    running = [qapp.enqueue("slow", [1.5]) for _ in range(3)]
    wait_until(
        lambda: all(job(conn, schema, i)["state"] == "running" for i in running),
        what="3 jobs running",
    )
    waiting = [qapp.enqueue("record") for _ in range(2)]  # no free slot: stay queued
    w.signal(signal.SIGTERM)
    assert w.wait_exit(15) == 0
    for job_id in running:
        row = job(conn, schema, job_id)
        assert (row["state"], row["attempt"], row["errors"]) == ("succeeded", 1, [])
        assert len(effects(conn, schema, job_id)) == 1
    for job_id in waiting:
        assert (job(conn, schema, job_id)["state"], job(conn, schema, job_id)["attempt"]) == (
            "queued",
            0,
        )
    assert w.pid not in workers.registered(conn)


def test_sigterm_hands_unfinished_jobs_back_without_using_an_attempt(
    qapp: App, conn: Conn, schema: str, workers: Workers
) -> None:
    a = workers.start("--shutdown-timeout", "1", *FAST, name="a")
    workers.wait_registered(conn, a)
    job_id = qapp.enqueue("slow", [60.0], {"later": 0.2}, max_attempts=1)
    wait_until(lambda: job(conn, schema, job_id)["state"] == "running", what="job running")
    assert holder_pid(job(conn, schema, job_id)["worker_id"]) == a.pid
    sent = time.monotonic()
    a.signal(signal.SIGTERM)
    wait_until(
        lambda: job(conn, schema, job_id)["state"] == "queued", timeout=5, what="job handed back"
    )
    assert time.monotonic() - sent < 1 + 2.0
    assert a.wait_exit(10) == 0
    row = job(conn, schema, job_id)
    assert (row["attempt"], row["error_count"], row["lost_count"], row["errors"]) == (1, 0, 0, [])
    assert row["worker_id"] is None and row["lease_expires_at"] is None
    # max_attempts=1 and one claim already made: a released job still gets its run.
    b = workers.start(*FAST, name="b")
    wait_until(
        lambda: job(conn, schema, job_id)["state"] == "succeeded",
        timeout=10,
        what="job finished by the second worker",
    )
    row = job(conn, schema, job_id)
    assert (row["attempt"], row["error_count"], row["lost_count"], row["errors"]) == (2, 0, 0, [])
    assert row["result"] == {"pid": b.pid, "attempt": 2}
    assert effects(conn, schema, job_id) == [(2, b.pid, False)]


@pytest.mark.parametrize("how", ["ctrl-c", "systemd-stop"])
def test_one_stop_request_to_a_supervised_group_is_graceful(
    qapp: App, conn: Conn, schema: str, workers: Workers, how: str
) -> None:
    sup = workers.start("--processes", "2", "--shutdown-timeout", "20", *FAST, name="supervisor")
    wait_until(lambda: len(workers.registered(conn)) == 2, timeout=20, what="2 workers up")
    children = workers.registered(conn)
    job_id = qapp.enqueue("slow", [1.5])
    wait_until(lambda: job(conn, schema, job_id)["state"] == "running", what="job running")
    if how == "ctrl-c":  # a terminal signals its whole foreground process group
        os.killpg(sup.pid, signal.SIGINT)
    else:  # systemd (KillMode=control-group) signals every process of the unit
        for pid in [sup.pid, *children]:
            os.kill(pid, signal.SIGTERM)
    assert sup.wait_exit(20) == 0
    row = job(conn, schema, job_id)
    assert (row["state"], row["attempt"], row["errors"]) == ("succeeded", 1, [])
    assert "handing running jobs back now" not in sup.log()


def test_second_ctrl_c_hands_running_jobs_back_at_once(
    qapp: App, conn: Conn, schema: str, workers: Workers
) -> None:
    sup = workers.start("--processes", "2", "--shutdown-timeout", "60", *FAST, name="supervisor")
    wait_until(lambda: len(workers.registered(conn)) == 2, timeout=20, what="2 workers up")
    job_id = qapp.enqueue("slow", [60.0])
    wait_until(lambda: job(conn, schema, job_id)["state"] == "running", what="job running")
    os.killpg(sup.pid, signal.SIGINT)
    sup.wait_log(r"SIGINT: no new claims; waiting up to 60s for 1 running job")
    assert job(conn, schema, job_id)["state"] == "running"
    os.killpg(sup.pid, signal.SIGINT)
    wait_until(
        lambda: job(conn, schema, job_id)["state"] == "queued", timeout=5, what="job handed back"
    )
    assert sup.wait_exit(10) == 0
    row = job(conn, schema, job_id)
    assert (row["attempt"], row["error_count"], row["lost_count"]) == (1, 0, 0)


def test_json_logs_have_one_line_per_job_event(
    qapp: App, conn: Conn, schema: str, workers: Workers
) -> None:
    w = workers.start("--log-format", "json", *FAST, name="json")
    workers.wait_registered(conn, w)
    ok, bad = qapp.enqueue("record"), qapp.enqueue("always_raises", max_attempts=1)
    for job_id, state in [(ok, "succeeded"), (bad, "failed")]:
        wait_until(
            lambda: job(conn, schema, job_id)["state"] == state,  # noqa: B023
            what=f"job {job_id} {state}",
        )
    w.signal(signal.SIGTERM)
    assert w.wait_exit(10) == 0
    lines = [json.loads(line) for line in w.log().splitlines() if line.startswith("{")]
    assert lines and all({"ts", "level", "logger", "message"} <= set(r) for r in lines)
    events = {(r.get("job_id"), r.get("event")): r for r in lines if "event" in r}
    for job_id, task, end in [(ok, "record", "succeeded"), (bad, "always_raises", "failed")]:
        assert events[(job_id, "started")]["task"] == task
        finished = events[(job_id, end)]
        assert (finished["task"], finished["attempt"]) == (task, 1)
        assert finished["duration_ms"] >= 0
