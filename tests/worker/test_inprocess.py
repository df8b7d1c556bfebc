"""The worker in this process against a real PostgreSQL: outcomes, retries, timeouts,
ordering, the run_at timer, leases and fencing, the LISTEN connection."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import threading
import time
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from pgqueue import App, LeaseLost, RetryPolicy
from pgqueue.worker import JobContext
from tests.helpers import wait_until
from tests.worker.inproc import running
from tests.worker.procs import job, wait_state

Conn = psycopg.Connection[Any]


def listen_backends(conn: Conn, schema: str) -> list[int]:
    """Backends whose last statement is this schema's LISTEN."""
    return [
        r[0]
        for r in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE query LIKE %s",
            (f'LISTEN "{schema}_%',),
        )
    ]


def test_sync_and_async_handlers_succeed(app: App, conn: Conn, schema: str) -> None:
    @app.task(name="add")
    def add(a: int, b: int) -> int:
        assert threading.current_thread().name.startswith("pgqueue-job")
        return a + b

    @app.task(name="amul")
    async def amul(a: int, b: int) -> dict[str, int]:
        await asyncio.sleep(0.01)
        return {"product": a * b}

    @app.task(name="opaque")
    def opaque() -> object:
        return object()  # not JSON: the job fails for good rather than lose its result

    ids = [add.defer(2, 3), amul.defer(4, 5)]
    opaque_id = opaque.defer()
    with running(app) as worker:
        row = conn.execute(
            f'SELECT host, pid, queues, concurrency FROM "{schema}".workers WHERE id = %s',
            (worker.id,),
        ).fetchone()
        assert row is not None and row[1:] == (os.getpid(), ["default"], 10)
        for job_id in ids:
            wait_state(conn, schema, job_id, "succeeded")
        failed = wait_state(conn, schema, opaque_id, "failed")
    assert failed["attempt"] == 1 and failed["result"] is None
    assert [e["kind"] for e in failed["errors"]] == ["result_not_json"]
    assert "(object) is not JSON" in failed["errors"][0]["message"]
    rows = [job(conn, schema, i) for i in ids]
    assert [r["result"] for r in rows] == [5, {"product": 20}]
    for r in rows:
        assert r["attempt"] == 1 and r["errors"] == [] and r["error_count"] == 0
        assert r["finished_at"] is not None and r["started_at"] is not None
        assert r["finished_at"] >= r["started_at"]
        assert r["lease_expires_at"] is None
    # A success moved out of the hot table in the completing statement; a failure stayed.
    moved = conn.execute(f'SELECT id FROM "{schema}".succeeded_jobs ORDER BY id').fetchall()
    assert [r[0] for r in moved] == sorted(ids)
    hot = conn.execute(f'SELECT id, state FROM "{schema}".jobs').fetchall()
    assert hot == [(opaque_id, "failed")]
    # A stopped worker leaves the workers table.
    assert conn.execute(f'SELECT count(*) FROM "{schema}".workers').fetchone() == (0,)


def test_always_raising_job_fails_after_max_attempts_with_every_error(
    app: App, conn: Conn, schema: str
) -> None:
    fast = RetryPolicy(base=0.1, factor=2.0, jitter=0.0)

    @app.task(name="boom", max_attempts=3, retry=fast)
    def boom(n: int) -> None:
        raise ValueError(f"boom {n}")

    @app.task(name="aboom", max_attempts=2, retry=fast)
    async def aboom() -> None:
        raise KeyError("async boom")

    sync_id, async_id = boom.defer(7), aboom.defer()
    with running(app) as worker:
        sync_row = wait_state(conn, schema, sync_id, "failed")
        async_row = wait_state(conn, schema, async_id, "failed")
    assert (sync_row["attempt"], sync_row["error_count"], sync_row["lost_count"]) == (3, 3, 0)
    assert (async_row["attempt"], async_row["error_count"]) == (2, 2)
    assert sync_row["finished_at"] is not None and sync_row["result"] is None
    errors = sync_row["errors"]
    assert [e["attempt"] for e in errors] == [1, 2, 3]
    for e in errors:
        assert e["kind"] == "error"
        assert e["type"] == "builtins.ValueError"
        assert e["message"] == "ValueError: boom 7"
        assert "Traceback" in e["traceback"] and 'raise ValueError(f"boom {n}")' in e["traceback"]
        assert e["worker"] == worker.id
    # Exponential backoff without jitter: 0.1 s, then 0.2 s between attempts.
    ats = conn.execute(
        "SELECT (e->>'at')::timestamptz FROM jsonb_array_elements(%s::jsonb) AS e", (Jsonb(errors),)
    ).fetchall()
    gaps = [(b[0] - a[0]).total_seconds() for a, b in itertools.pairwise(ats)]
    assert gaps[0] >= 0.1 and gaps[1] >= 0.2, gaps
    assert [e["type"] for e in async_row["errors"]] == ["builtins.KeyError"] * 2


def test_no_retry_for_fails_at_once(app: App, conn: Conn, schema: str) -> None:
    class Permanent(Exception):
        pass

    class VeryPermanent(Permanent):
        pass

    @app.task(name="perm", max_attempts=5, no_retry_for=(Permanent,))
    def perm(sub: bool) -> None:
        raise (VeryPermanent if sub else Permanent)("give up")

    @app.task(
        name="transient",
        max_attempts=2,
        no_retry_for=(Permanent,),
        retry=RetryPolicy(base=0.05, jitter=0),
    )
    def transient() -> None:
        raise OSError("try again")

    ids = [perm.defer(False), perm.defer(True), transient.defer()]
    with running(app):
        rows = [wait_state(conn, schema, i, "failed") for i in ids]
    for r in rows[:2]:
        assert (r["attempt"], r["error_count"], len(r["errors"])) == (1, 1, 1)
    assert rows[0]["errors"][0]["type"].endswith(".Permanent")
    assert rows[1]["errors"][0]["type"].endswith(".VeryPermanent")
    assert rows[2]["attempt"] == 2  # other exceptions still retry


def test_timeouts_cancel_async_and_abandon_sync_handlers(app: App, conn: Conn, schema: str) -> None:
    cancelled = threading.Event()
    release = threading.Event()

    @app.task(name="hang_async", timeout=0.3, max_attempts=1)
    async def hang_async() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    @app.task(name="hang_sync", timeout=0.3, max_attempts=1)
    def hang_sync() -> None:
        release.wait(30)

    @app.task(name="quick")
    def quick() -> str:
        return "ok"

    ids = [hang_async.defer(), hang_sync.defer()]
    try:
        with running(app, concurrency=2):
            rows = [wait_state(conn, schema, i, "failed") for i in ids]
            # The abandoned thread does not hold a slot: the worker keeps working.
            assert wait_state(conn, schema, quick.defer(), "succeeded")["result"] == "ok"
    finally:
        release.set()
    assert cancelled.is_set()
    for r, name in zip(rows, ["hang_async", "hang_sync"], strict=False):
        (err,) = r["errors"]
        assert err["kind"] == "timeout"
        assert err["type"] == "pgqueue.errors.JobTimeout"
        assert f"{name} ran past its timeout of 0.3s" in err["message"]
        assert (r["finished_at"] - r["started_at"]).total_seconds() < 3


def test_claims_by_priority_then_run_at_then_id(app: App, conn: Conn, schema: str) -> None:
    order: list[str] = []

    @app.task(name="mark")
    def mark(tag: str) -> None:
        order.append(tag)

    (now,) = conn.execute("SELECT now()").fetchone()
    for tag, prio, ago in [
        ("a", 0, 3),
        ("b", 5, 1),
        ("c", 5, 2),
        ("d", 0, 3),
        ("e", -1, 10),
        ("f", 0, 2),
    ]:
        app.enqueue(mark, [tag], priority=prio, run_at=now - timedelta(seconds=ago))
    with running(app, concurrency=1):
        wait_until(lambda: len(order) == 6, what="6 jobs run")
    assert order == ["c", "b", "a", "d", "f", "e"]


@pytest.mark.parametrize("listen", [False, True], ids=["timer-only", "notify-then-timer"])
def test_scheduled_job_runs_when_due_not_at_next_poll(
    app: App, conn: Conn, schema: str, listen: bool
) -> None:
    @app.task(name="later")
    def later() -> None:
        pass

    ids: list[int] = []
    if not listen:  # enqueued before the worker starts: only the timer can wake it in time
        ids.append(app.enqueue(later, delay=1.5))
    with running(app, poll_interval=10.0, listen=listen):
        if listen:
            time.sleep(0.3)  # let the worker go idle on its 10 s poll first
            ids.append(app.enqueue(later, delay=1.5))
        row = wait_state(conn, schema, ids[0], "succeeded", timeout=6)
    late = (row["started_at"] - row["run_at"]).total_seconds()
    assert 0 <= late < 1.0, f"started {late:.3f}s after run_at"


def test_extend_lease_lengthens_the_lease_and_heartbeats_keep_it(
    app: App, conn: Conn, schema: str
) -> None:
    extended, release = threading.Event(), threading.Event()

    @app.task(name="extender", pass_context=True)
    def extender(ctx: JobContext) -> str:
        with pytest.raises(ValueError):
            ctx.extend_lease(0)
        ctx.extend_lease(60)
        extended.set()
        release.wait(10)
        return "done"

    job_id = extender.defer()
    try:
        with running(app, lease=1.5) as worker:
            wait_until(extended.is_set, what="lease extended")

            def left() -> float:
                sql = f'SELECT extract(epoch FROM lease_expires_at - now()) FROM "{schema}".jobs '
                return float(conn.execute(sql + "WHERE id = %s", (job_id,)).fetchone()[0])

            assert 55 < left() <= 60

            # Two heartbeats later (every 0.5 s), the lease has not been shortened to 1.5 s.
            def beats() -> Any:
                sql = f'SELECT last_heartbeat_at FROM "{schema}".workers WHERE id = %s'
                return conn.execute(sql, (worker.id,)).fetchone()[0]

            first = beats()
            wait_until(lambda: beats() > first, timeout=3, what="a heartbeat")
            second = beats()
            wait_until(lambda: beats() > second, timeout=3, what="another heartbeat")
            assert left() > 50
            release.set()
            assert wait_state(conn, schema, job_id, "succeeded")["result"] == "done"
    finally:
        release.set()


def _steal(conn: Conn, schema: str, job_id: int) -> None:
    """What a reclaim by another worker does to the row: a new attempt (fencing token)
    and a lease of its own (long, so that this test's reaper leaves it alone)."""
    conn.execute(
        f'UPDATE "{schema}".jobs SET attempt = attempt + 1, worker_id = %s, '
        "lease_expires_at = now() + interval '1 hour' WHERE id = %s AND state = 'running'",
        ("someone-else", job_id),
    )


def _assert_still_stolen(conn: Conn, schema: str, job_id: int) -> None:
    row = job(conn, schema, job_id)
    assert (row["state"], row["attempt"], row["worker_id"]) == ("running", 2, "someone-else")
    assert row["result"] is None and row["finished_at"] is None
    assert (row["error_count"], row["lost_count"], row["errors"]) == (0, 0, [])


@pytest.mark.parametrize("outcome", ["returns", "raises"])
def test_fenced_completion_of_a_reclaimed_job_is_discarded(
    app: App, conn: Conn, schema: str, outcome: str, caplog: pytest.LogCaptureFixture
) -> None:
    started, go = threading.Event(), threading.Event()

    @app.task(name="zombie", max_attempts=5)
    def zombie() -> str:
        started.set()
        go.wait(10)
        if outcome == "raises":
            raise RuntimeError("too late")
        return "from the old attempt"

    job_id = zombie.defer()
    caplog.set_level(logging.WARNING, logger="pgqueue.worker")
    try:
        with running(app, lease=30.0) as worker:  # no heartbeat (every 10 s) during the test
            wait_until(started.is_set, what="handler started")
            _steal(conn, schema, job_id)
            go.set()
            assert worker.completer is not None
            wait_until(lambda: worker.completer.lost == 1, what="the write rejected")
            _assert_still_stolen(conn, schema, job_id)
            assert worker.held.snapshot() == {}
        _assert_still_stolen(conn, schema, job_id)  # and shutdown did not release it
    finally:
        go.set()
    assert "lease lost before the result was written; result discarded" in caplog.text


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_heartbeat_tells_the_handler_its_lease_is_lost(
    app: App, conn: Conn, schema: str, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    seen: dict[str, Any] = {}
    started, done = threading.Event(), threading.Event()

    @app.task(name="sync_victim", pass_context=True)
    def sync_victim(ctx: JobContext) -> str:
        started.set()
        seen["lost"] = ctx.lease_lost.wait(10)
        try:
            ctx.extend_lease(5)
        except LeaseLost as exc:
            seen["extend"] = exc
        done.set()
        return "from the old attempt"

    @app.task(name="async_victim", pass_context=True)
    async def async_victim(ctx: JobContext) -> str:
        started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            seen["lost"] = ctx.lease_lost.is_set()
            seen["cancelled"] = True
            done.set()
            raise
        return "from the old attempt"

    job_id = (sync_victim if kind == "sync" else async_victim).defer()
    caplog.set_level(logging.WARNING, logger="pgqueue.worker")
    with running(app, lease=1.5) as worker:  # heartbeat every 0.5 s
        wait_until(started.is_set, what="handler started")
        _steal(conn, schema, job_id)
        wait_until(done.is_set, timeout=3, what="handler told its lease is lost")
        wait_until(
            lambda: worker.dispatcher is not None and not worker.dispatcher.running,
            what="run finished",
        )
        _assert_still_stolen(conn, schema, job_id)
        assert worker.held.snapshot() == {}
    _assert_still_stolen(conn, schema, job_id)
    assert seen["lost"] is True
    if kind == "sync":
        assert isinstance(seen["extend"], LeaseLost)
    else:
        assert seen["cancelled"] is True
    assert f"job {job_id}: lease lost" in caplog.text


def test_listen_connection_terminated_reconnects_and_wakes_on_notify(
    app: App, conn: Conn, schema: str
) -> None:
    @app.task(name="ping")
    def ping() -> None:
        pass

    with running(app, poll_interval=30.0) as worker:  # pick-up in time can only be NOTIFY
        assert worker.listener is not None
        (old,) = listen_backends(conn, schema)
        conn.execute("SELECT pg_terminate_backend(%s)", (old,))
        wait_until(
            lambda: [p for p in listen_backends(conn, schema) if p != old],
            timeout=5,
            what="a new LISTEN backend",
        )
        wait_until(lambda: worker.listener.reconnects == 1, what="listener reconnected")
        wait_state(conn, schema, ping.defer(), "succeeded", timeout=3)
        time.sleep(0.2)  # idle again, on its 30 s poll
        row = wait_state(conn, schema, ping.defer(), "succeeded", timeout=3)
    assert (row["started_at"] - row["created_at"]).total_seconds() < 1.0


def test_listen_down_pick_up_stays_within_poll_interval(app: App, conn: Conn, schema: str) -> None:
    @app.task(name="ping")
    def ping() -> None:
        pass

    with running(app, poll_interval=0.5) as worker:
        assert worker.listener is not None
        worker.listener.dsn = "host=127.0.0.1 port=1 user=nobody dbname=nowhere connect_timeout=1"
        (old,) = listen_backends(conn, schema)
        conn.execute("SELECT pg_terminate_backend(%s)", (old,))
        wait_until(lambda: not worker.listener.connected.is_set(), what="listener down")
        wait_state(conn, schema, ping.defer(), "succeeded", timeout=3)
        latencies = []
        for _ in range(3):
            time.sleep(0.1)
            row = wait_state(conn, schema, ping.defer(), "succeeded", timeout=3)
            latencies.append((row["started_at"] - row["created_at"]).total_seconds())
        assert listen_backends(conn, schema) == []  # still not listening: polling did it
    assert max(latencies) < 0.5 + 0.5, latencies


def test_due_job_row_locked_elsewhere_does_not_make_the_worker_spin(
    app: App, conn: Conn, schema: str, pg_dsn: str
) -> None:
    @app.task(name="locked")
    def locked() -> str:
        return "ran"

    job_id = locked.defer()
    calls = {"n": 0}
    # A job row locked by some other transaction (an admin's open BEGIN ... UPDATE, a tool
    # that locks rows): SKIP LOCKED passes it over although it is due.
    with psycopg.connect(pg_dsn) as locker:
        locker.execute(f'SELECT 1 FROM "{schema}".jobs WHERE id = %s FOR UPDATE', (job_id,))
        with running(app, poll_interval=1.0) as worker:
            claim = worker._claim

            async def counting_claim(limit: int, *, flow: bool = False) -> Any:
                calls["n"] += not flow  # (each fast claim may be followed by a flow claim)
                return await claim(limit, flow=flow)

            worker._claim = counting_claim  # type: ignore[method-assign]
            time.sleep(1.5)
            assert worker.claimed == 0
            assert calls["n"] < 15, f"{calls['n']} claims in 1.5 s while the job was locked"
            locker.rollback()
            # Once the lock is gone, the job is claimed within the poll interval.
            assert wait_state(conn, schema, job_id, "succeeded", timeout=3)["result"] == "ran"


def test_results_and_errors_postgres_cannot_store_do_not_block_other_jobs(
    app: App, conn: Conn, schema: str
) -> None:
    @app.task(name="nul_result")
    def nul_result() -> str:
        return "a\x00b"  # jsonb refuses \u0000: the job fails (result_not_json), not stuck

    @app.task(name="backslash_result")
    def backslash_result() -> str:
        return "a\\u0000b"  # only looks like one: stored as it is

    @app.task(name="nul_error", max_attempts=1)
    def nul_error() -> None:
        raise ValueError("bad\x00byte")

    @app.task(name="fine")
    def fine() -> int:
        return 1

    ids = [nul_result.defer(), backslash_result.defer(), nul_error.defer(), fine.defer()]
    with running(app, concurrency=4):
        rows = [
            wait_state(conn, schema, i, s)
            for i, s in zip(ids, ["failed", "succeeded", "failed", "succeeded"], strict=True)
        ]
    assert [r["result"] for r in rows] == [None, "a\\u0000b", None, 1]
    assert rows[0]["errors"][0]["kind"] == "result_not_json"
    assert "NUL character" in rows[0]["errors"][0]["message"]
    (err,) = rows[2]["errors"]
    assert err["message"] == "ValueError: bad\\x00byte"
    assert "bad\\x00byte" in err["traceback"]


def test_works_only_its_queues_by_priority_across_them(app: App, conn: Conn, schema: str) -> None:
    order: list[str] = []

    @app.task(name="tagged")
    def tagged(tag: str) -> None:
        order.append(tag)

    app.enqueue(tagged, ["a0"], queue="a")
    app.enqueue(tagged, ["b5"], queue="b", priority=5)
    other = app.enqueue(tagged, ["c9"], queue="c", priority=9)
    app.enqueue(tagged, ["a1"], queue="a", priority=1)
    with running(app, queues=["a", "b"], concurrency=1):
        wait_until(lambda: len(order) == 3, what="the 3 jobs of queues a and b")
        time.sleep(0.3)  # and nothing more
    assert order == ["b5", "a1", "a0"]
    assert (job(conn, schema, other)["state"], job(conn, schema, other)["attempt"]) == ("queued", 0)


def test_maintenance_removes_workers_that_stopped_heartbeating(
    app: App, conn: Conn, schema: str
) -> None:
    for name, silent_for in [("ghost", "10 minutes"), ("just-quiet", "30 seconds")]:
        conn.execute(
            f'INSERT INTO "{schema}".workers (id, host, pid, queues, concurrency, '
            "last_heartbeat_at) VALUES (%s, 'elsewhere', 1, '{default}', 1, "
            "now() - %s::interval)",
            (name, silent_for),
        )

    def ids() -> set[str]:
        return {r[0] for r in conn.execute(f'SELECT id FROM "{schema}".workers')}

    with running(app) as worker:  # a worker is dead after max(3 leases, 60 s) of silence
        wait_until(lambda: "ghost" not in ids(), timeout=5, what="the dead worker removed")
        assert ids() == {worker.id, "just-quiet"}


def test_fast_claims_work_and_every_fenced_write_checks_the_worker_id(
    app: App, conn: Conn, schema: str
) -> None:
    """--fast-claims commits claims asynchronously; the worker id in every fenced write
    is what keeps a claim undone by a server crash from being completed by its stale run:
    a write carrying the right id and attempt but another worker's id changes nothing."""

    @app.task(name="hold")
    async def hold(seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "done"

    job_id = hold.defer(1.0)
    with running(app, fast_claims=True) as worker:
        row = wait_state(conn, schema, job_id, "running")
        other = "someone-else:1:deadbeef"
        params: dict[str, Any] = {
            "ids": [job_id],
            "attempts": [row["attempt"]],
            "worker_id": other,
            "done": f'{{"{job_id}":[{row["attempt"]},"stale"]}}',
            "id": job_id,
            "attempt": row["attempt"],
            "lease": 60.0,
            "seconds": 60.0,
            "final": True,
            "backoff": 0.0,
            "error": '{"kind":"error","message":"stale"}',
            "message": "stale",
            "max_snoozes": 1000,
            "progress": f'{{"{job_id}": {{"done": 1}}}}',
            "state": '{"step": 1}',
        }
        for name in (
            "job_complete_fenced",
            "job_heartbeat_fenced",
            "job_fail_fenced",
            "job_cancel_fenced",
            "job_snooze_fenced",
            "job_extend_lease_fenced",
            "job_checkpoint_fenced",
            "job_release_fenced",
        ):
            assert conn.execute(app.query(name), params).fetchall() == [], name
        assert job(conn, schema, job_id)["worker_id"] == worker.id
        assert job(conn, schema, job_id)["checkpoint"] is None
        assert job(conn, schema, job_id)["progress"] is None
        row = wait_state(conn, schema, job_id, "succeeded")
    assert (row["result"], row["attempt"], row["errors"]) == ("done", 1, [])


def test_every_fenced_write_refuses_a_stale_attempt_of_the_same_worker(
    app: App, conn: Conn, schema: str
) -> None:
    """The other half of the fencing token: the holder's own id with an attempt that is
    not the current one (a run whose lease was lost and then re-claimed by the same worker)
    changes nothing, in every fenced write, batched ones included."""

    @app.task(name="hold_attempt")
    async def hold_attempt(seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "done"

    job_id = hold_attempt.defer(1.0)
    other = hold_attempt.defer(1.0)  # a second held job, so the batch has two entries
    with running(app) as worker:
        row = wait_state(conn, schema, job_id, "running")
        wait_state(conn, schema, other, "running")
        stale = row["attempt"] + 1
        params: dict[str, Any] = {
            "ids": [other, job_id],
            "attempts": [0, stale],  # neither is the current attempt
            "worker_id": worker.id,
            "done": f'{{"{job_id}":[{stale},"stale"]}}',
            "id": job_id,
            "attempt": stale,
            "lease": 60.0,
            "seconds": 60.0,
            "final": True,
            "backoff": 0.0,
            "error": '{"kind":"error","message":"stale"}',
            "message": "stale",
            "max_snoozes": 1000,
            "progress": f'{{"{job_id}": {{"done": 1}}}}',
            "state": '{"step": 1}',
        }
        for name in (
            "job_complete_fenced",
            "job_heartbeat_fenced",
            "job_held_check",
            "job_fail_fenced",
            "job_cancel_fenced",
            "job_snooze_fenced",
            "job_extend_lease_fenced",
            "job_checkpoint_fenced",
            "job_release_fenced",
        ):
            assert conn.execute(app.query(name), params).fetchall() == [], name
        # the current attempt still counts: the held-check sees both jobs as the worker's
        current = {**params, "attempts": [job(conn, schema, other)["attempt"], row["attempt"]]}
        held = conn.execute(app.query("job_held_check"), current).fetchall()
        assert sorted(r[0] for r in held) == sorted([job_id, other])
        row = wait_state(conn, schema, job_id, "succeeded")
    assert (row["result"], row["attempt"], row["errors"]) == ("done", 1, [])


def test_retry_policy_says_which_errors_retry(app: App, conn: Conn, schema: str) -> None:
    """RetryPolicy(retry_on=..., no_retry_for=...): an error it does not retry fails the
    job on its first attempt; one it retries comes back; Retry() always does."""
    from pgqueue import Retry, RetryPolicy

    policy = RetryPolicy(base=0.01, jitter=0, retry_on=(ConnectionError,), no_retry_for=(
        ConnectionRefusedError,))  # fmt: skip
    runs: list[str] = []

    @app.task(name="picky", retry=policy, max_attempts=3)
    def picky(kind: str) -> str:
        runs.append(kind)
        if kind == "conn" and runs.count("conn") == 1:
            raise ConnectionResetError("flaky network")  # a ConnectionError: retried
        if kind == "refused":
            raise ConnectionRefusedError("no server")  # in no_retry_for: final
        if kind == "value":
            raise ValueError("bad input")  # not in retry_on: final
        if kind == "asked" and runs.count("asked") == 1:
            raise Retry(after=0)  # always retries
        return kind

    ids = {k: picky.defer(k) for k in ("conn", "refused", "value", "asked")}
    with running(app):
        assert wait_state(conn, schema, ids["conn"], "succeeded")["attempt"] == 2
        assert wait_state(conn, schema, ids["asked"], "succeeded")["attempt"] == 2
        assert wait_state(conn, schema, ids["refused"], "failed")["attempt"] == 1
        assert wait_state(conn, schema, ids["value"], "failed")["attempt"] == 1
    with pytest.raises(ValueError, match="takes exception classes"):
        RetryPolicy(retry_on=("ConnectionError",))  # type: ignore[arg-type]
