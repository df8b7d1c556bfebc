"""Operating a live queue (issue 5): the views and SQL functions an operator calls with
plain SQL (queue_stats, running_jobs, dead_jobs, retry_job, retry_failed, cancel_job,
pause_queue, resume_queue, prune_jobs) while an in-process worker runs, and the same
through ``app.admin``.

Every wait is a condition with a deadline; the only fixed sleeps are deliberate
"nothing happens for N s" windows.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from pgqueue import App, RetryPolicy
from pgqueue.errors import InvalidJobError, JobNotFound, UnknownQueueError
from pgqueue.worker import JobContext
from tests.helpers import wait_until
from tests.worker.inproc import running
from tests.worker.procs import job, state_of, wait_state

Conn = psycopg.Connection[Any]
FAST = RetryPolicy(base=0.05, factor=1.0, jitter=0.0)
MISSING = 999_999_999


# -- helpers: the operator's plain SQL ----------------------------------------------------
def sql(conn: Conn, schema: str, text: str, *params: Any) -> Any:
    """One value from ``text``, with ``pgqueue.`` standing for the test's schema."""
    row = conn.execute(text.replace("pgqueue.", f'"{schema}".'), params).fetchone()
    assert row is not None
    return row[0]


def view(conn: Conn, schema: str, name: str, where: str = "", *params: Any) -> list[dict[str, Any]]:
    cur = conn.execute(f'SELECT * FROM "{schema}".{name} {where}', params)
    assert cur.description is not None
    cols = [c.name for c in cur.description]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


# queue_stats columns of a queue without waiting jobs and without limits
NO_FLOW = {
    "waiting": 0,
    "max_running": None,
    "max_running_per_group": None,
    "rate_limit": None,
    "rate_period": None,
    "priority_aging": None,
}


def stats(conn: Conn, schema: str) -> dict[str, dict[str, Any]]:
    """queue_stats by queue name, without the queue column."""
    return {r.pop("queue"): r for r in view(conn, schema, "queue_stats", "ORDER BY queue")}


def snapshot(conn: Conn, schema: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every job row and every queues row: to show that a refused call wrote nothing."""
    jobs = conn.execute(f'SELECT * FROM "{schema}".all_jobs ORDER BY id').fetchall()
    queues = conn.execute(f'SELECT * FROM "{schema}".queues ORDER BY name').fetchall()
    return jobs, queues


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Set at the end of the test whatever happens, so no blocked handler outlives it."""
    event = threading.Event()
    yield event
    event.set()


# -- views --------------------------------------------------------------------------------
def test_queue_stats_counts_per_queue_while_worker_runs(
    app: App, conn: Conn, schema: str, release: threading.Event
) -> None:
    @app.task(name="block", queue="busy")
    def block() -> None:
        release.wait(30)

    @app.task(name="boom", queue="busy", max_attempts=1)
    def boom() -> None:
        raise ValueError("boom")

    @app.task(name="quick", queue="busy")
    def quick() -> int:
        return 1

    sql(conn, schema, "SELECT pgqueue.pause_queue('idle')::text")  # paused, never any job
    with running(app, queues=["busy"], concurrency=2):
        wait_state(conn, schema, boom.defer(), "failed")
        wait_state(conn, schema, quick.defer(), "succeeded")
        blockers = [block.defer(), block.defer()]
        for b in blockers:
            wait_state(conn, schema, b, "running")
        block.defer()  # both slots busy: stays queued
        app.enqueue(block, delay=60)  # scheduled
        (now,) = conn.execute("SELECT now()").fetchone()  # type: ignore[misc]
        # a queue no worker serves; its oldest job has been due for 5 s
        app.enqueue(quick, queue="other", run_at=now - timedelta(seconds=5))
        app.enqueue(quick, queue="other", run_at=now - timedelta(seconds=2))
        app.enqueue(quick, queue="other", delay=30)
        s = stats(conn, schema)
        api = {r.pop("queue"): r for r in app.admin.queues()}
        release.set()
    assert set(s) == {"busy", "idle", "other"}
    busy_age = s["busy"].pop("oldest_queued_age_seconds")
    assert busy_age is not None and 0 <= float(busy_age) < 10
    assert s["busy"] == {
        "queued": 1,
        "scheduled": 1,
        "running": 2,
        "failed": 1,
        "finished_last_minute": 2,
        "paused": False,
        **NO_FLOW,
    }
    other_age = s["other"].pop("oldest_queued_age_seconds")
    assert 5 <= float(other_age) < 30
    assert s["other"] == {
        "queued": 2,
        "scheduled": 1,
        "running": 0,
        "failed": 0,
        "finished_last_minute": 0,
        "paused": False,
        **NO_FLOW,
    }
    assert s["idle"] == {
        "queued": 0,
        "scheduled": 0,
        "running": 0,
        "failed": 0,
        "oldest_queued_age_seconds": None,
        "finished_last_minute": 0,
        "paused": True,
        **NO_FLOW,
    }
    # app.admin.queues() is the same view
    for rows in (api, s):
        for row in rows.values():
            row.pop("oldest_queued_age_seconds", None)
    assert api == s


def test_running_jobs_and_dead_jobs_views(
    app: App, conn: Conn, schema: str, release: threading.Event
) -> None:
    @app.task(name="hold")
    def hold() -> str:
        release.wait(30)  # never looks at a cancellation flag
        return "done"

    @app.task(name="dead", max_attempts=2, retry=FAST)
    def dead(n: int) -> None:
        raise RuntimeError(f"always {n}")

    with running(app, lease=6.0) as worker:
        held, failed = hold.defer(), dead.defer(3)
        wait_state(conn, schema, held, "running")
        wait_state(conn, schema, failed, "failed")
        (r,) = view(conn, schema, "running_jobs")
        assert (r["id"], r["queue"], r["task"], r["worker_id"]) == (
            held,
            "default",
            "hold",
            worker.id,
        )
        assert (r["attempt"], r["max_attempts"], r["cancel_requested"]) == (1, 20, False)
        assert 0 < r["lease_left_seconds"] <= 6
        assert r["run_seconds"] >= 0 and r["started_at"] is not None

        (d,) = view(conn, schema, "dead_jobs")
        assert (d["id"], d["queue"], d["task"]) == (failed, "default", "dead")
        assert (d["attempt"], d["error_count"], d["lost_count"]) == (2, 2, 0)
        assert d["last_error"] == "RuntimeError: always 3"
        assert d["last_error_kind"] == "error"
        assert d["finished_at"] is not None

        # A cancellation a sync handler ignores shows in running_jobs until it returns;
        # it then ends cancelled and its result is thrown away.
        assert sql(conn, schema, "SELECT pgqueue.cancel_job(%s)", held) == "cancelling"
        (r,) = view(conn, schema, "running_jobs")
        assert r["cancel_requested"] is True
        time.sleep(0.3)  # deliberate: the worker heard it and the handler still runs
        assert state_of(conn, schema, held) == "running"
        release.set()
        row = wait_state(conn, schema, held, "cancelled")
    assert row["result"] is None and row["errors"][-1]["kind"] == "cancelled"
    assert view(conn, schema, "running_jobs") == []
    assert [d["id"] for d in view(conn, schema, "dead_jobs")] == [failed]  # cancelled is not dead


# -- retry --------------------------------------------------------------------------------
def test_retry_job_requeues_a_failed_job_with_fresh_counts_and_it_runs_again(
    app: App, conn: Conn, schema: str
) -> None:
    failing = {"on": True}
    runs: list[int] = []

    @app.task(name="flaky", queue="work", max_attempts=2, retry=FAST, pass_context=True)
    def flaky(ctx: JobContext) -> str:
        runs.append(ctx.attempt)
        if failing["on"]:
            raise OSError("down")
        return "up"

    @app.task(name="ok", queue="work")
    def ok() -> None:
        pass

    with running(app, queues=["work"], poll_interval=10.0):
        job_id = flaky.defer()
        failed = wait_state(conn, schema, job_id, "failed")
        assert (failed["attempt"], failed["error_count"]) == (2, 2)
        conn.execute(f'UPDATE "{schema}".jobs SET lost_count = 1 WHERE id = %s', (job_id,))
        done = ok.defer()
        wait_state(conn, schema, done, "succeeded")
        parked = app.enqueue(ok, queue="parked")  # no worker serves it: stays queued

        # Only failed (or cancelled) jobs are retried; nothing else changes.
        before = snapshot(conn, schema)
        for other in (parked, done, MISSING):
            assert sql(conn, schema, "SELECT pgqueue.retry_job(%s)", other) is False
        assert snapshot(conn, schema) == before

        # Paused, to look at the retried row before the worker takes it.
        sql(conn, schema, "SELECT pgqueue.pause_queue('work')::text")
        assert sql(conn, schema, "SELECT pgqueue.retry_job(%s)", job_id) is True
        row = job(conn, schema, job_id)
        assert row["state"] == "queued"
        assert (row["error_count"], row["lost_count"], row["attempt"]) == (0, 0, 2)
        assert row["finished_at"] is None and row["worker_id"] is None
        assert len(row["errors"]) == 2  # the history stays
        assert sql(conn, schema, "SELECT pgqueue.retry_job(%s)", job_id) is False  # queued now

        failing["on"] = False
        assert sql(conn, schema, "SELECT pgqueue.resume_queue('work')") is True
        row = wait_state(conn, schema, job_id, "succeeded", timeout=3)
    assert runs == [1, 2, 3]
    assert (row["attempt"], row["error_count"], row["lost_count"]) == (3, 0, 0)
    assert row["result"] == "up"
    assert sql(conn, schema, "SELECT pgqueue.retry_job(%s)", job_id) is False  # succeeded


def test_retry_failed_filters_by_queue_and_task(app: App, conn: Conn, schema: str) -> None:
    @app.task(name="a.boom", queue="q1", max_attempts=1)
    def a_boom() -> None:
        raise ValueError("a")

    @app.task(name="b.boom", queue="q1", max_attempts=1)
    def b_boom() -> None:
        raise ValueError("b")

    def attempts() -> dict[int, tuple[str, int]]:
        return {i: (state_of(conn, schema, i), job(conn, schema, i)["attempt"]) for i in ids}

    def wait_attempts(expected: dict[int, int]) -> None:
        want = {i: ("failed", n) for i, n in expected.items()}
        wait_until(lambda: attempts() == want, what=f"attempts {expected}")

    with running(app, queues=["q1", "q2"]):
        a1, b1, a2 = a_boom.defer(), b_boom.defer(), app.enqueue(a_boom, queue="q2")
        ids = [a1, b1, a2]
        wait_attempts({a1: 1, b1: 1, a2: 1})
        assert sql(conn, schema, "SELECT pgqueue.retry_failed('q2')") == 1
        wait_attempts({a1: 1, b1: 1, a2: 2})
        assert sql(conn, schema, "SELECT pgqueue.retry_failed(task_name => 'b.boom')") == 1
        wait_attempts({a1: 1, b1: 2, a2: 2})
        assert sql(conn, schema, "SELECT pgqueue.retry_failed('q1', 'a.boom')") == 1
        wait_attempts({a1: 2, b1: 2, a2: 2})
        assert sql(conn, schema, "SELECT pgqueue.retry_failed('nosuch')") == 0
        assert sql(conn, schema, "SELECT pgqueue.retry_failed('q2', 'b.boom')") == 0
        assert sql(conn, schema, "SELECT pgqueue.retry_failed()") == 3
        wait_attempts({a1: 3, b1: 3, a2: 3})
        # through Python: same filter, same effect
        assert app.admin.retry_failed(queue="q1", task="b.boom") == 1
        wait_attempts({a1: 3, b1: 4, a2: 3})


def test_retry_skips_a_failed_job_whose_dedupe_key_is_held(
    app: App, conn: Conn, schema: str
) -> None:
    @app.task(name="boom", max_attempts=1)
    def boom() -> None:
        raise ValueError("no")

    with running(app):
        d1 = app.enqueue(boom, dedupe_key="k")
        wait_state(conn, schema, d1, "failed")
        d2 = app.enqueue(boom, dedupe_key="k", queue="parked")  # unfinished, holds "k"
        assert d2 != d1
        before = snapshot(conn, schema)
        assert sql(conn, schema, "SELECT pgqueue.retry_job(%s)", d1) is False
        assert sql(conn, schema, "SELECT pgqueue.retry_failed()") == 0
        assert app.admin.retry([d1]) == {d1: False}
        assert snapshot(conn, schema) == before

        # Two failed jobs share the key and nothing unfinished holds it: one is retried,
        # the other is skipped (no unique violation).
        assert sql(conn, schema, "SELECT pgqueue.cancel_job(%s)", d2) == "cancelled"
        d3 = app.enqueue(boom, dedupe_key="k")
        wait_state(conn, schema, d3, "failed")
        assert sql(conn, schema, "SELECT pgqueue.retry_failed()") == 1
        wait_until(
            lambda: (
                sorted(job(conn, schema, i)["attempt"] for i in (d1, d3)) == [1, 2]
                and {state_of(conn, schema, i) for i in (d1, d3)} == {"failed"}
            ),
            what="one of the two retried and failed again",
        )
        # A cancelled job can be retried too, once the key is free.
        assert sql(conn, schema, "SELECT pgqueue.retry_job(%s)", d2) is True
        assert state_of(conn, schema, d2) == "queued"


# -- cancel -------------------------------------------------------------------------------
def test_cancel_queued_and_scheduled_jobs_at_once_and_they_never_run(
    app: App, conn: Conn, schema: str, release: threading.Event
) -> None:
    ran: list[str] = []

    @app.task(name="block")
    def block() -> None:
        release.wait(30)

    @app.task(name="mark")
    def mark(tag: str) -> None:
        ran.append(tag)

    with running(app, concurrency=1, poll_interval=0.2):
        blocker = block.defer()
        wait_state(conn, schema, blocker, "running")
        queued = mark.defer("queued")  # no free slot
        scheduled = app.enqueue(mark, ["scheduled"], delay=0.5)
        for job_id in (queued, scheduled):
            assert sql(conn, schema, "SELECT pgqueue.cancel_job(%s)", job_id) == "cancelled"
            row = job(conn, schema, job_id)
            assert row["state"] == "cancelled" and row["finished_at"] is not None
            assert (row["attempt"], row["errors"], row["worker_id"]) == (0, [], None)
        release.set()
        wait_state(conn, schema, blocker, "succeeded")
        # A job due after the cancelled scheduled one would have been: once it ran, the
        # cancelled ones had every chance to run.
        sentinel = app.enqueue(mark, ["sentinel"], delay=1.0)
        wait_state(conn, schema, sentinel, "succeeded")
    assert ran == ["sentinel"]
    assert {state_of(conn, schema, i) for i in (queued, scheduled)} == {"cancelled"}

    # Finished jobs keep their state (which is returned); a missing id gives NULL.
    before = snapshot(conn, schema)
    assert sql(conn, schema, "SELECT pgqueue.cancel_job(%s)", blocker) == "succeeded"
    assert sql(conn, schema, "SELECT pgqueue.cancel_job(%s)", queued) == "cancelled"
    assert sql(conn, schema, "SELECT pgqueue.cancel_job(%s)", MISSING) is None
    assert snapshot(conn, schema) == before


LISTEN_MODES = [
    pytest.param({}, id="notify"),
    # No LISTEN: only the heartbeat (every lease/3 = 0.5 s) tells the worker.
    pytest.param({"listen": False, "lease": 1.5, "poll_interval": 0.1}, id="heartbeat"),
]


@pytest.mark.parametrize("mode", LISTEN_MODES)
def test_cancel_running_async_job(app: App, conn: Conn, schema: str, mode: dict[str, Any]) -> None:
    started, cancelled = threading.Event(), threading.Event()
    runs: list[int] = []

    @app.task(name="sleepy", max_attempts=5)
    async def sleepy() -> None:
        runs.append(1)
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    @app.task(name="after")
    def after() -> None:
        pass

    with running(app, **mode):
        job_id = sleepy.defer()
        wait_until(started.is_set, what="handler started")
        t0 = time.monotonic()
        assert sql(conn, schema, "SELECT pgqueue.cancel_job(%s)", job_id) == "cancelling"
        wait_until(cancelled.is_set, timeout=1.5, what="handler cancelled")
        row = wait_state(conn, schema, job_id, "cancelled", timeout=1.5)
        elapsed = time.monotonic() - t0
        # Not retried: a later job runs, the cancelled one does not run again.
        wait_state(conn, schema, after.defer(), "succeeded")
    assert elapsed < 1.5, elapsed
    assert runs == [1]
    assert (row["attempt"], row["error_count"], row["lost_count"]) == (1, 0, 0)
    assert row["finished_at"] is not None and row["lease_expires_at"] is None
    assert row["cancel_requested_at"] is not None
    (err,) = row["errors"]
    assert err["kind"] == "cancelled" and err["attempt"] == 1
    assert sql(conn, schema, "SELECT pgqueue.cancel_job(%s)", job_id) == "cancelled"


@pytest.mark.parametrize("mode", LISTEN_MODES)
def test_cancel_running_sync_job_that_checks_the_flag(
    app: App, conn: Conn, schema: str, mode: dict[str, Any]
) -> None:
    started, returned = threading.Event(), threading.Event()

    @app.task(name="poller", pass_context=True)
    def poller(ctx: JobContext) -> str:
        started.set()
        deadline = time.monotonic() + 30
        while not ctx.cancelled.wait(0.02) and time.monotonic() < deadline:
            pass
        returned.set()
        return "stopped early"  # a normal return: the job still ends cancelled

    with running(app, **mode):
        job_id = poller.defer()
        wait_until(started.is_set, what="handler started")
        t0 = time.monotonic()
        assert sql(conn, schema, "SELECT pgqueue.cancel_job(%s)", job_id) == "cancelling"
        wait_until(returned.is_set, timeout=1.5, what="handler returned")
        row = wait_state(conn, schema, job_id, "cancelled", timeout=1.5)
        elapsed = time.monotonic() - t0
    assert elapsed < 1.5, elapsed
    assert row["result"] is None and row["attempt"] == 1 and row["error_count"] == 0
    assert [e["kind"] for e in row["errors"]] == ["cancelled"]


# -- pause / resume -----------------------------------------------------------------------
def test_pause_stops_claims_and_resume_restarts_them(app: App, conn: Conn, schema: str) -> None:
    ran: list[str] = []

    @app.task(name="mark", queue="q")
    def mark(tag: str) -> None:
        ran.append(tag)

    # A 10 s poll: after resume, only resume_queue's NOTIFY can wake the worker in time.
    with running(app, queues=["q", "other"], poll_interval=10.0):
        sql(conn, schema, "SELECT pgqueue.pause_queue('q')::text")
        sql(conn, schema, "SELECT pgqueue.pause_queue('q')::text")  # twice is fine
        paused_at = sql(conn, schema, f"SELECT paused_at FROM \"{schema}\".queues WHERE name = 'q'")
        ids = [mark.defer(str(i)) for i in range(3)]
        # the worker is alive and claiming from its other queue
        wait_state(conn, schema, app.enqueue(mark, ["other"], queue="other"), "succeeded")
        time.sleep(1.0)  # deliberate: nothing may be claimed from the paused queue
        rows = [job(conn, schema, i) for i in ids]
        assert [(r["state"], r["attempt"]) for r in rows] == [("queued", 0)] * 3
        assert ran == ["other"]
        s = stats(conn, schema)["q"]
        assert (s["queued"], s["running"], s["paused"]) == (3, 0, True)
        # pausing again kept the first pause time
        assert (
            sql(conn, schema, f"SELECT paused_at FROM \"{schema}\".queues WHERE name = 'q'")
            == paused_at
        )

        t0 = time.monotonic()
        assert sql(conn, schema, "SELECT pgqueue.resume_queue('q')") is True
        for i in ids:
            wait_state(conn, schema, i, "succeeded", timeout=2)
        assert time.monotonic() - t0 < 2
        assert stats(conn, schema)["q"]["paused"] is False
        assert sql(conn, schema, "SELECT pgqueue.resume_queue('q')") is False  # not paused
        assert sql(conn, schema, "SELECT pgqueue.resume_queue('other')") is False
        assert sql(conn, schema, "SELECT pgqueue.resume_queue('nosuch')") is False
    assert sorted(ran) == ["0", "1", "2", "other"]


def test_pause_lets_running_jobs_finish(
    app: App, conn: Conn, schema: str, release: threading.Event
) -> None:
    @app.task(name="block")
    def block() -> str:
        release.wait(30)
        return "finished"

    with running(app, concurrency=2):
        first = block.defer()
        wait_state(conn, schema, first, "running")
        sql(conn, schema, "SELECT pgqueue.pause_queue('default')::text")
        second = block.defer()  # a free slot, but the queue is paused
        release.set()
        assert wait_state(conn, schema, first, "succeeded")["result"] == "finished"
        time.sleep(0.5)  # deliberate: the free slots stay free
        assert state_of(conn, schema, second) == "queued"
        assert sql(conn, schema, "SELECT pgqueue.resume_queue('default')") is True
        wait_state(conn, schema, second, "succeeded", timeout=3)


# -- prune --------------------------------------------------------------------------------
def backdate(conn: Conn, schema: str, ids: list[int]) -> None:
    """finished_at two hours ago, wherever the jobs live (succeeded ones moved out)."""
    for table in ("jobs", "succeeded_jobs"):
        conn.execute(
            f"UPDATE \"{schema}\".{table} SET finished_at = now() - interval '2 hours' "
            "WHERE id = ANY(%s)",
            (ids,),
        )


def test_prune_jobs_deletes_only_old_finished_jobs_of_the_given_states(
    app: App, conn: Conn, schema: str, release: threading.Event
) -> None:
    @app.task(name="quick")
    def quick() -> None:
        pass

    @app.task(name="boom", max_attempts=1)
    def boom() -> None:
        raise ValueError("x")

    @app.task(name="block")
    def block() -> None:
        release.wait(30)

    with running(app, concurrency=2):
        ok_old, ok_new = quick.defer(), quick.defer()
        bad_old, bad_new = boom.defer(), boom.defer()
        for i in (ok_old, ok_new):
            wait_state(conn, schema, i, "succeeded")
        for i in (bad_old, bad_new):
            wait_state(conn, schema, i, "failed")
        gone_old = app.enqueue(quick, queue="parked")
        gone_new = app.enqueue(quick, queue="parked")
        for i in (gone_old, gone_new):
            assert sql(conn, schema, "SELECT pgqueue.cancel_job(%s)", i) == "cancelled"
        queued = app.enqueue(quick, queue="parked")
        scheduled = app.enqueue(quick, delay=3600)
        busy = block.defer()
        wait_state(conn, schema, busy, "running")
        # Two hours ago: past the 1 h we prune by, well inside the worker's own retention.
        # Unfinished rows get an old finished_at too: prune must go by state, not time only.
        backdate(conn, schema, [ok_old, bad_old, gone_old, queued, scheduled, busy])

        def left() -> set[int]:
            return {r[0] for r in conn.execute(f'SELECT id FROM "{schema}".all_jobs').fetchall()}

        everything = left()

        assert (
            sql(conn, schema, "SELECT pgqueue.prune_jobs('1 hour', ARRAY['queued', 'running'])")
            == 0
        )
        assert sql(conn, schema, "SELECT pgqueue.prune_jobs('3 hours')") == 0
        assert left() == everything
        assert sql(conn, schema, "SELECT pgqueue.prune_jobs('1 hour', ARRAY['succeeded'])") == 1
        assert left() == everything - {ok_old}
        assert sql(conn, schema, "SELECT pgqueue.prune_jobs('1 hour')") == 2
        assert left() == everything - {ok_old, bad_old, gone_old}
        # the running job is still the worker's: it finishes normally
        release.set()
        wait_state(conn, schema, busy, "succeeded")
    assert left() == {ok_new, bad_new, gone_new, queued, scheduled, busy}
    assert sql(conn, schema, "SELECT pgqueue.prune_jobs('0 seconds', ARRAY['succeeded'])") == 2
    assert left() == {bad_new, gone_new, queued, scheduled}


# -- the Python API -----------------------------------------------------------------------
def test_admin_api_does_the_same_through_python(
    app: App, conn: Conn, schema: str, release: threading.Event
) -> None:
    failing = {"on": True}
    started = threading.Event()

    @app.task(name="flaky", max_attempts=1)
    def flaky() -> str:
        if failing["on"]:
            raise OSError("down")
        return "up"

    @app.task(name="sleepy")
    async def sleepy() -> None:
        started.set()
        await asyncio.sleep(30)

    @app.task(name="mark", queue="q")
    def mark() -> None:
        pass

    admin = app.admin
    with running(app, queues=["default", "q"], poll_interval=10.0) as worker:
        # pause / resume
        admin.pause("q")
        paused = mark.defer()
        assert [r["paused"] for r in admin.queues() if r["queue"] == "q"] == [True]
        time.sleep(0.5)  # deliberate: nothing is claimed from the paused queue
        assert state_of(conn, schema, paused) == "queued"
        assert admin.resume("q") is True
        wait_state(conn, schema, paused, "succeeded", timeout=3)
        assert admin.resume("q") is False

        # retry
        failed = flaky.defer()
        wait_state(conn, schema, failed, "failed")
        assert [j["id"] for j in admin.jobs(state="failed")] == [failed]
        assert admin.jobs(queue="q", task="mark")[0]["id"] == paused
        failing["on"] = False
        assert admin.retry([failed, paused]) == {failed: True, paused: False}
        row = wait_state(conn, schema, failed, "succeeded")
        assert (row["attempt"], row["error_count"], row["result"]) == (2, 0, "up")

        # cancel: running, queued (scheduled), finished
        running_id = sleepy.defer()
        wait_until(started.is_set, what="sleepy started")
        later = app.enqueue(sleepy, delay=3600)
        running_rows = [r for r in view(conn, schema, "running_jobs") if r["id"] == running_id]
        assert running_rows and running_rows[0]["worker_id"] == worker.id
        assert admin.cancel([running_id, later, failed]) == {
            running_id: "cancelling",
            later: "cancelled",
            failed: "succeeded",
        }
        row = wait_state(conn, schema, running_id, "cancelled", timeout=1.5)
        assert [e["kind"] for e in row["errors"]] == ["cancelled"]
        shown = admin.job(running_id)
        assert shown["state"] == "cancelled" and shown["cancel_requested_at"] is not None
        assert [w["id"] for w in admin.workers()] == [worker.id]

        # prune
        backdate(conn, schema, [paused, failed, later])
        assert admin.prune(3600, ["succeeded"]) == 2  # paused and failed both succeeded
        assert admin.prune(3600) == 1  # later (cancelled)
        assert admin.prune(3600) == 0
        remaining = {r["id"] for r in admin.jobs()}
        assert remaining == {running_id}


def test_admin_errors_write_nothing(app: App, conn: Conn, schema: str) -> None:
    @app.task(name="boom", max_attempts=1)
    def boom() -> None:
        raise ValueError("x")

    with running(app, poll_interval=10.0):
        failed = boom.defer()
        wait_state(conn, schema, failed, "failed")
        queued = app.enqueue(boom, delay=3600)
        before = snapshot(conn, schema)
        admin = app.admin
        with pytest.raises(JobNotFound, match=str(MISSING)):
            admin.job(MISSING)
        with pytest.raises(JobNotFound):
            admin.cancel([queued, MISSING])  # the good id is not cancelled either
        with pytest.raises(JobNotFound):
            admin.retry([failed, MISSING])  # nor retried
        with pytest.raises(UnknownQueueError, match="nosuch"):
            admin.resume("nosuch")
        with pytest.raises(UnknownQueueError):
            admin.retry_failed(queue="nosuch")
        with pytest.raises(UnknownQueueError):
            admin.jobs(queue="nosuch")
        with pytest.raises(InvalidJobError):
            admin.pause("not a queue!")
        with pytest.raises(InvalidJobError):
            admin.cancel([0])
        with pytest.raises(InvalidJobError):
            admin.prune(60, ["queued"])
        for bad_age in (-1, float("nan"), float("inf"), 1e300):
            with pytest.raises(InvalidJobError, match="older_than"):
                admin.prune(bad_age)
        assert snapshot(conn, schema) == before
        assert state_of(conn, schema, queued) == "queued"
        assert state_of(conn, schema, failed) == "failed"


def test_cancel_a_prefetched_job_waiting_in_the_buffer(
    app: App, conn: Conn, schema: str, release: threading.Event
) -> None:
    ran: list[int] = []

    @app.task(name="block")
    def block() -> None:
        release.wait(30)

    @app.task(name="mark", pass_context=True)
    def mark(ctx: JobContext) -> None:
        ran.append(ctx.job_id)

    with running(app, concurrency=1, prefetch=2) as worker:
        blocker = block.defer()
        wait_state(conn, schema, blocker, "running")
        buffered = [mark.defer(), mark.defer()]
        # claimed into the buffer: 'running' in the table, not started
        for i in buffered:
            wait_state(conn, schema, i, "running")
        assert worker.dispatcher is not None and len(worker.dispatcher.buffer) == 2
        assert sql(conn, schema, "SELECT pgqueue.cancel_job(%s)", buffered[0]) == "cancelling"
        row = wait_state(conn, schema, buffered[0], "cancelled", timeout=1.5)
        release.set()
        wait_state(conn, schema, buffered[1], "succeeded")
    assert ran == [buffered[1]]
    assert [e["kind"] for e in row["errors"]] == ["cancelled"]


# -- regressions: cancel requests that outlive their worker, paused backlogs, bad names --
def test_a_paused_backlog_does_not_delay_scheduled_jobs_of_other_queues(
    app: App, conn: Conn, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    @app.task(name="mark")
    def mark() -> None:
        pass

    # The worker's "a job is due but I could not claim it" backoff starts at 2 s here, as
    # it would after a few seconds idle beside the backlog (it doubles from 10 ms up to
    # poll_interval): deterministic, and no waiting for it to grow.
    monkeypatch.setattr("pgqueue.worker.loop._DUE_BACKOFF_START", 2.0)
    sql(conn, schema, "SELECT pgqueue.pause_queue('paused')::text")
    app.enqueue(mark, queue="paused")  # due, but paused
    with running(app, queues=["paused", "live"], poll_interval=10.0):
        job_id = app.enqueue(mark, queue="live", delay=0.3)
        # With the run_at timer it starts ~0.3 s from now; without it, 4 s or more.
        row = wait_state(conn, schema, job_id, "succeeded", timeout=2.0)
    late = (row["started_at"] - row["run_at"]).total_seconds()
    assert late < 1.0, f"started {late:.2f}s after run_at"


def test_a_cancelled_job_of_a_dead_worker_ends_cancelled_not_run_again(
    app: App, conn: Conn, schema: str
) -> None:
    ran: list[int] = []

    @app.task(name="mark")
    def mark() -> None:
        ran.append(1)

    job_id = mark.defer()
    # A worker claimed it and died: running, its lease about to run out.
    conn.execute(
        f"UPDATE \"{schema}\".jobs SET state = 'running', attempt = 1, worker_id = 'gone:1:dead', "
        "started_at = now(), lease_expires_at = now() + interval '0.3 seconds' WHERE id = %s",
        (job_id,),
    )
    assert sql(conn, schema, "SELECT pgqueue.cancel_job(%s)", job_id) == "cancelling"
    with running(app):
        wait_until(
            lambda: state_of(conn, schema, job_id) in ("cancelled", "succeeded", "failed"),
            what="the job finished one way or another",
        )
    assert ran == []
    assert state_of(conn, schema, job_id) == "cancelled"


def test_shutdown_before_the_cancel_was_heard_does_not_requeue_the_job(
    app: App, conn: Conn, schema: str, release: threading.Event
) -> None:
    started = threading.Event()

    @app.task(name="block")
    def block() -> None:
        started.set()
        release.wait(30)

    # No LISTEN and a 30 s lease (heartbeat every 10 s): this worker cannot hear it in time.
    with running(app, listen=False, lease=30.0, shutdown_timeout=0.3):
        job_id = block.defer()
        wait_until(started.is_set, what="handler started")
        assert sql(conn, schema, "SELECT pgqueue.cancel_job(%s)", job_id) == "cancelling"
    release.set()
    assert state_of(conn, schema, job_id) == "cancelled"


def test_pause_queue_in_sql_refuses_a_bad_queue_name(conn: Conn, schema: str) -> None:
    with contextlib.suppress(psycopg.errors.CheckViolation):
        sql(conn, schema, "SELECT pgqueue.pause_queue('not a queue!')::text")
    assert conn.execute(f'SELECT name FROM "{schema}".queues').fetchall() == []
