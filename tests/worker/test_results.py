"""Results: ``job.result()`` / ``await job.wait()`` with a worker in this process against a
real PostgreSQL: succeeded, failed, cancelled, timeouts, unknown ids, and proof that the
wake-up is the NOTIFY on the done channel (not the safety re-check)."""

from __future__ import annotations

import asyncio
import json
import pickle
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from pgqueue import (
    App,
    InvalidJobError,
    Job,
    JobCancelled,
    JobFailed,
    JobNotFound,
    JobSpec,
    ResultTimeout,
    RetryPolicy,
)
from pgqueue.results import DoneListener
from tests.helpers import arun, wait_until
from tests.worker.inproc import running
from tests.worker.procs import wait_state

Conn = psycopg.Connection[Any]
LONG = 60.0  # a safety re-check interval far longer than any wake-up these tests allow


def listener(app: App) -> DoneListener:
    found = app._done_listener
    assert found is not None, "nobody has waited yet"
    return found


def waiting_for(app: App, *ids: int) -> bool:
    """True once every id has a registered waiter and the LISTEN is in place."""
    found = app._done_listener
    return (
        found is not None
        and found.listening.is_set()
        and all(str(i) in found._waiters for i in ids)
    )


class Waiter:
    """``fn()`` in a thread; records what it returned or raised, and when."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.value: Any = None
        self.error: BaseException | None = None
        self.at = 0.0
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self.value = fn()
        except BaseException as exc:
            self.error = exc
        self.at = time.monotonic()

    def join(self, timeout: float = 15.0) -> Waiter:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the waiter did not return"
        return self


def test_result_and_wait_return_the_stored_json(app: App, conn: Conn, schema: str) -> None:
    @app.task(name="make")
    def make(n: int) -> dict[str, Any]:
        return {"n": n, "items": [n, None, True, "x"]}

    @app.task(name="amake")
    async def amake(n: int) -> list[int]:
        await asyncio.sleep(0.01)
        return [n, n]

    @app.task(name="nothing")
    def nothing() -> None:
        pass

    first, second, third = make.defer(1), amake.defer(2), nothing.defer()
    assert isinstance(first, Job) and isinstance(first, int)
    with running(app):
        assert first.result(timeout=10) == {"n": 1, "items": [1, None, True, "x"]}
        assert arun(app, second.wait(timeout=10)) == [2, 2]
        assert third.result(timeout=10) is None
    # after the fact: one read, no listener needed; a handle for a bare id works too
    assert app.job(int(first)).result() == {"n": 1, "items": [1, None, True, "x"]}
    assert arun(app, app.job(int(second)).wait(timeout=0)) == [2, 2]
    assert first.state() == "succeeded"
    assert wait_state(conn, schema, first, "succeeded")["result"]["n"] == 1


def test_failed_job_raises_its_last_error(app: App) -> None:
    fast = RetryPolicy(base=0.05, factor=1.0, jitter=0.0)

    @app.task(name="boom", max_attempts=2, retry=fast)
    def boom(word: str) -> None:
        raise ValueError(f"boom {word}")

    @app.task(name="aboom", max_attempts=1)
    async def aboom() -> None:
        raise KeyError("missing")

    @app.task(name="opaque", max_attempts=3)
    def opaque() -> object:
        return {1, 2}  # a set is not JSON

    failing, afailing, weird = boom.defer("x"), aboom.defer(), opaque.defer()
    with running(app):
        with pytest.raises(JobFailed) as raised:
            failing.result(timeout=15)
        with pytest.raises(JobFailed) as araised:
            arun(app, afailing.wait(timeout=15))
        with pytest.raises(JobFailed) as wraised:
            weird.result(timeout=15)
    exc = raised.value
    assert not isinstance(exc, JobCancelled)
    assert (exc.job_id, exc.task, exc.state, exc.kind) == (failing, "boom", "failed", "error")
    assert exc.error_type == "builtins.ValueError"
    assert exc.error_message == "ValueError: boom x"
    assert str(exc) == f"job {failing} (boom) failed: ValueError: boom x"
    assert araised.value.error_type == "builtins.KeyError"
    assert "KeyError: 'missing'" in str(araised.value)
    # a return value that is not JSON fails the job at once (no retry), saying why
    assert wraised.value.kind == "result_not_json"
    assert "(set) is not JSON" in str(wraised.value)
    assert app.admin.job(weird)["attempt"] == 1
    # the exceptions pickle (they cross process boundaries in users' code)
    copy = pickle.loads(pickle.dumps(exc))
    assert type(copy) is JobFailed and str(copy) == str(exc) and copy.job_id == exc.job_id


def test_cancelled_jobs_raise_job_cancelled_promptly(app: App, conn: Conn, schema: str) -> None:
    started = threading.Event()

    @app.task(name="sleepy")
    async def sleepy() -> str:
        started.set()
        await asyncio.sleep(30)
        return "never"

    queued = sleepy.defer()
    # A queued job cancelled while someone waits: cancel_job() tells the done channel.
    waiter = Waiter(lambda: queued.result(timeout=30, recheck=LONG))
    wait_until(lambda: waiting_for(app, queued), what="the waiter listening")
    cancelled_at = time.monotonic()
    assert app.admin.cancel([queued]) == {queued: "cancelled"}
    waiter.join()
    assert isinstance(waiter.error, JobCancelled)
    assert waiter.at - cancelled_at < 2.0, "woken by the NOTIFY, not by the re-check"
    assert waiter.error.kind is None and str(waiter.error) == f"job {queued} (sleepy) cancelled"

    running_job = sleepy.defer()
    with running(app):
        assert started.wait(10)
        wait_state(conn, schema, running_job, "running")
        awaiter = Waiter(lambda: arun(app, running_job.wait(timeout=30, recheck=LONG)))
        wait_until(lambda: waiting_for(app, running_job), what="the async waiter listening")
        cancelled_at = time.monotonic()
        assert app.admin.cancel([running_job]) == {running_job: "cancelling"}
        awaiter.join()
    assert isinstance(awaiter.error, JobCancelled)
    assert awaiter.at - cancelled_at < 3.0
    assert awaiter.error.kind == "cancelled"
    assert "cancelled on request while running" in str(awaiter.error)


def test_timeout_raises_result_timeout_naming_the_state(app: App, conn: Conn, schema: str) -> None:
    gate = threading.Event()

    @app.task(name="gated")
    def gated() -> str:
        gate.wait(20)
        return "open"

    job = gated.defer()
    later = app.enqueue(gated, delay=3600)
    child = gated.options(after=[job]).defer()
    began = time.monotonic()
    with pytest.raises(ResultTimeout) as raised:
        job.result(timeout=0.3, recheck=LONG)
    assert time.monotonic() - began < 3.0
    exc = raised.value
    assert isinstance(exc, TimeoutError)
    assert (exc.job_id, exc.state) == (job, "queued")
    assert (
        str(exc) == f"job {job} (gated) did not finish within 0.3s: it is queued, not started yet"
    )
    with pytest.raises(ResultTimeout, match="scheduled for later"):
        later.result(timeout=0)
    with pytest.raises(ResultTimeout, match="waiting for the jobs it depends on") as waited:
        arun(app, child.wait(timeout=0.2))
    assert waited.value.state == "waiting"
    try:
        with running(app):
            wait_state(conn, schema, job, "running")
            with pytest.raises(ResultTimeout, match=r"it is running \(attempt 1 of 20\)"):
                job.result(timeout=0.2)
            gate.set()
            assert job.result(timeout=10) == "open"  # the job itself was not touched
            assert child.result(timeout=10) == "open"
    finally:
        gate.set()


def test_unknown_or_bad_ids_and_arguments(app: App) -> None:
    @app.task(name="noop")
    def noop() -> None:
        pass

    missing = app.job(987_654_321)
    with pytest.raises(JobNotFound, match="no job with id 987654321"):
        missing.result()
    with pytest.raises(JobNotFound):
        arun(app, missing.wait(timeout=1))
    with pytest.raises(JobNotFound):
        missing.state()
    for bad in (0, -1, "7", 1.5, True, None, 2**63):
        with pytest.raises(InvalidJobError, match="a job id is a positive whole number"):
            app.job(bad)  # type: ignore[arg-type]
    job = noop.defer()
    for timeout in (-1, float("nan"), "1", True):
        with pytest.raises(InvalidJobError, match="timeout must be a number of seconds >= 0"):
            job.result(timeout=timeout)  # type: ignore[arg-type]
    for recheck in (0, -1.0, "5"):
        with pytest.raises(InvalidJobError, match="recheck must be a number of seconds > 0"):
            job.result(timeout=1, recheck=recheck)  # type: ignore[arg-type]


def test_job_handles_are_ids(app: App, conn: Conn, schema: str) -> None:
    @app.task(name="noop")
    def noop(i: int = 0) -> int:
        return i

    one = noop.defer()
    many = app.enqueue_many([noop.spec(1), JobSpec("noop", (2,))])
    batch = noop.defer_many([[3], {"i": 4}])
    assert all(isinstance(j, Job) for j in [one, *many, *batch])
    assert [int(j) for j in many + batch] == [one + 1, one + 2, one + 3, one + 4]
    assert json.dumps({"ids": [one, *many]}) == json.dumps({"ids": [int(one), *map(int, many)]})
    assert str(one) == repr(one) == str(int(one)) and hash(one) == hash(int(one))
    assert type(pickle.loads(pickle.dumps(one))) is int
    row = conn.execute(f'SELECT task FROM "{schema}".all_jobs WHERE id = %s', (one,)).fetchone()
    assert row == ("noop",)  # psycopg takes it as an int
    # the job handle works as an argument of another job, and as after=
    passed = noop.options(after=many).defer(one)
    with running(app):
        assert passed.result(timeout=10) == one
        assert [j.result(timeout=10) for j in batch] == [3, 4]
    later = arun(app, app.enqueue_async(noop, [5]))
    assert isinstance(later, Job) and later.state() == "queued"


def test_the_wake_up_is_the_notify(app: App, conn: Conn, schema: str) -> None:
    gate = threading.Event()

    @app.task(name="gated")
    def gated() -> str:
        gate.wait(20)
        return "open"

    sync_job, async_job = gated.defer(), gated.defer()
    try:
        with running(app, concurrency=2):
            wait_state(conn, schema, sync_job, "running")
            wait_state(conn, schema, async_job, "running")
            waiters = [
                Waiter(lambda: sync_job.result(timeout=30, recheck=LONG)),
                Waiter(lambda: arun(app, async_job.wait(timeout=30, recheck=LONG))),
            ]
            wait_until(lambda: waiting_for(app, sync_job, async_job), what="both listening")
            assert all(w.thread.is_alive() for w in waiters)  # (the jobs are not done)
            released = time.monotonic()
            gate.set()
            for w in waiters:
                w.join()
    finally:
        gate.set()
    for w in waiters:
        assert (w.value, w.error) == ("open", None)
        assert w.at - released < 1.5, f"took {w.at - released:.2f}s: not woken by the NOTIFY"
    # one LISTEN connection served both waiters; it is still there for the next ones
    assert listener(app).connects == 1


def test_a_batch_notify_wakes_every_waiter_in_it(app: App, conn: Conn, schema: str) -> None:
    @app.task(name="noop")
    def noop(i: int) -> int:
        return i

    jobs = noop.defer_many([[i] for i in range(400)])
    payloads: list[str] = []
    with psycopg.connect(app.dsn, autocommit=True) as spy:
        spy.execute(f'LISTEN "{schema}_done"')
        results: dict[str, Any] = {}

        async def wait_all() -> list[Any]:
            return await asyncio.gather(*(j.wait(timeout=30, recheck=LONG) for j in jobs))

        def run() -> None:
            results["values"] = arun(app, wait_all())

        waiter = Waiter(run)
        wait_until(lambda: waiting_for(app, *jobs), what="400 waiters listening")
        # 400 waiters, one LISTEN connection
        listening = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE query = %s", (f'LISTEN "{schema}_done"',)
        ).fetchone()
        assert listening == (2,)  # the app's and this test's spy
        started = time.monotonic()
        with running(app, concurrency=50, prefetch=200):
            waiter.join(30)
        took = waiter.at - started
        payloads = [n.payload for n in spy.notifies(timeout=0.5)]
    assert results["values"] == list(range(400))
    assert took < 15, f"{took:.1f}s"
    ids = [int(x) for p in payloads for x in p.split(",")]
    assert sorted(ids) == sorted(map(int, jobs)), "each job told exactly once"
    assert len(payloads) < 400, "completions are told per batch, not per job"
    assert max(len(p.split(",")) for p in payloads) > 1


def test_listener_reconnects_and_waiters_still_hear(app: App, conn: Conn, schema: str) -> None:
    gate = threading.Event()

    @app.task(name="gated")
    def gated() -> str:
        gate.wait(20)
        return "open"

    job = gated.defer()
    try:
        with running(app):
            wait_state(conn, schema, job, "running")
            waiter = Waiter(lambda: job.result(timeout=30, recheck=LONG))
            wait_until(lambda: waiting_for(app, job), what="listening")
            killed = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = %s",
                (f'LISTEN "{schema}_done"',),
            ).fetchall()
            assert killed == [(True,)]
            wait_until(lambda: listener(app).connects == 2, what="the listener reconnected")
            wait_until(lambda: waiting_for(app, job), what="listening again")
            released = time.monotonic()
            gate.set()
            waiter.join()
    finally:
        gate.set()
    assert (waiter.value, waiter.error) == ("open", None)
    assert waiter.at - released < 1.5


def test_listener_closes_when_idle_and_starts_again(app: App) -> None:
    @app.task(name="noop")
    def noop() -> int:
        return 1

    queued = noop.defer()
    with pytest.raises(ResultTimeout):
        queued.result(timeout=0.3)
    done = listener(app)
    done.idle_close = 0.2
    wait_until(lambda: done._thread is None, what="the idle listener thread ended")
    assert not done.listening.is_set()
    with running(app):
        assert queued.result(timeout=10) == 1
    app.close()  # stops the listener; the app can wait again afterwards
    assert app._done_listener is None
    assert app.job(queued).result() == 1
