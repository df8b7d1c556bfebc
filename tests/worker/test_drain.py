"""app.drain(): due jobs run here, through the worker's own claim / fenced completion /
retry path, and each run's outcome comes back."""

from __future__ import annotations

import asyncio
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from pgqueue import App, Cancel, DrainTimeout, InvalidJobError, JobContext, RetryPolicy
from pgqueue.testing import assert_enqueued, assert_not_enqueued, enqueued_jobs
from tests.worker.procs import job

Conn = psycopg.Connection[Any]


def test_drain_runs_due_jobs_and_reports_each(app: App, conn: Conn, schema: str) -> None:
    ran: list[Any] = []

    @app.task(name="add")
    def add(a: int, b: int) -> int:
        ran.append(threading.current_thread().name)
        return a + b

    @app.task(name="amul", queue="math")
    async def amul(a: int, b: int) -> int:
        await asyncio.sleep(0)
        return a * b

    @app.task(name="boom", max_attempts=2, retry=RetryPolicy(base=3600))
    def boom() -> None:
        raise ValueError("no")

    @app.task(name="dead", max_attempts=1)
    def dead() -> None:
        raise RuntimeError("for good")

    @app.task(name="stop", bind=True)
    def stop(ctx: JobContext) -> None:
        raise Cancel(f"attempt {ctx.attempt}")

    j_add, j_mul = add.delay(2, 3), amul.delay(4, 5)
    j_boom, j_dead, j_stop = boom.delay(), dead.delay(), stop.delay()
    later = add.apply_async((1, 1), countdown=3600)

    drained = app.drain()
    assert drained.counts == {"succeeded": 2, "retry": 1, "failed": 1, "cancelled": 1}
    assert not drained.ok
    by_id = {r.id: r for r in drained.runs}
    assert (by_id[j_add].state, by_id[j_add].result) == ("succeeded", 5)
    assert (by_id[j_mul].state, by_id[j_mul].result) == ("succeeded", 20)
    assert by_id[j_boom].state == "retry" and by_id[j_boom].error is not None
    assert by_id[j_boom].error["message"] == "ValueError: no"
    assert by_id[j_dead].state == "failed" and by_id[j_stop].state == "cancelled"
    # the rows say the same: the worker's fenced writes did it
    assert job(conn, schema, j_boom)["state"] == "queued"  # its backoff: left for later
    assert job(conn, schema, j_dead)["state"] == "failed"
    assert j_add.result(timeout=0) == 5
    # the scheduled job and the retry are still waiting; with_scheduled runs both
    assert_enqueued(add, (1, 1))
    assert [r["id"] for r in enqueued_jobs(app)] == [j_boom, later]
    assert app.drain().runs == []
    again = app.drain(with_scheduled=True)
    assert [(r.id, r.attempt, r.state) for r in again.runs] == [
        (j_boom, 2, "failed"),  # its last attempt
        (later, 1, "succeeded"),
    ]
    assert_not_enqueued(add)
    assert enqueued_jobs(app) == []
    assert ran and all(name.startswith("pgqueue-job") for name in ran)
    assert conn.execute(f'SELECT count(*) FROM "{schema}".workers').fetchone() == (0,)


def test_drain_by_queue_with_dependencies_and_typed_args(app: App) -> None:
    seen: list[Any] = []

    @app.task(name="step", queue="flow")
    def step(n: int, key: uuid.UUID) -> int:
        seen.append((n, key))
        return n

    @app.task(name="other", queue="elsewhere")
    def other() -> None: ...

    key = uuid.UUID(int=7)
    first = step.delay(1, key)
    second = step.options(after=[first]).defer(2, key)  # waiting until first succeeds
    untouched = other.delay()
    drained = app.drain(queues=["flow"])
    assert [(r.id, r.state) for r in drained.runs] == [(first, "succeeded"), (second, "succeeded")]
    assert seen == [(1, key), (2, key)]
    assert [r["id"] for r in enqueued_jobs(app, queue="elsewhere")] == [untouched]
    with pytest.raises(InvalidJobError):
        app.drain(queues=["not a queue"])


def test_drain_timeout_hands_the_job_back(app: App, conn: Conn, schema: str) -> None:
    @app.task(name="slow")
    async def slow() -> None:
        await asyncio.sleep(3600)

    stuck = slow.delay()
    with pytest.raises(DrainTimeout, match=r"stopped after 0\.5s"):
        app.drain(timeout=0.5)
    assert job(conn, schema, stuck)["state"] == "queued"  # handed back, no attempt used


def test_drain_async_in_a_running_loop(app: App) -> None:
    @app.task(name="hello")
    async def hello(name: str) -> str:
        return f"hello {name}"

    async def main() -> None:
        j = await hello.defer_async("ada")
        with pytest.raises(RuntimeError, match="drain_async"):
            app.drain()
        drained = await app.drain_async()
        assert [(r.id, r.result) for r in drained.runs] == [(j, "hello ada")]
        assert await j.wait(timeout=0) == "hello ada"
        await app.aclose()

    asyncio.run(main())


def test_assertions_name_what_is_there(app: App) -> None:
    @app.task(name="mail")
    def mail(to: str, *, when: datetime) -> None: ...

    at = datetime(2026, 1, 1, tzinfo=UTC)
    mail.delay("ada@example.com", when=at)
    mail.apply_async(("bob@example.com",), {"when": at + timedelta(days=1)}, queue="slow")
    assert len(assert_enqueued(mail)) == 2
    assert_enqueued(mail, ["ada@example.com"], {"when": at}, count=1)
    assert_enqueued("mail", kwargs={"when": at + timedelta(days=1)}, queue="slow", app=app)
    assert_not_enqueued(mail, ("carol@example.com",))
    with pytest.raises(AssertionError, match=r"expected a job of 'mail' args=\['eve'\]") as info:
        assert_enqueued(mail, ["eve"])
    assert "ada@example.com" in str(info.value) and "bob@example.com" in str(info.value)
    with pytest.raises(AssertionError, match="expected no"):
        assert_not_enqueued(mail, ("ada@example.com",))
    with pytest.raises(AssertionError, match="found 2"):
        assert_enqueued(mail, count=1)
    rows = app.admin.jobs(task="mail")
    assert {tuple(r["args"]) for r in rows} == {("ada@example.com",), ("bob@example.com",)}
    assert {r["kwargs"]["when"] for r in rows} == {at, at + timedelta(days=1)}
