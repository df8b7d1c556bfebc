"""Eager mode: enqueue runs the handler at once, in the caller, with no database."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from typing import Any

import pytest

from pgqueue import App, InvalidJobError, JobContext, JobFailed, Retry
from pgqueue.testing import assert_enqueued, assert_not_enqueued, eager, enqueued_jobs

NO_DB = "postgresql://127.0.0.1:1/nothing-listens-here?connect_timeout=1"


def make_app() -> App:
    return App(NO_DB, schema="eager_test")


def test_enqueue_runs_the_handler_now_without_a_database() -> None:
    app = make_app()
    calls: list[Any] = []

    @app.task(name="add")
    def add(a: int, b: int) -> int:
        calls.append((a, b))
        return a + b

    @app.task(name="aprice")
    async def aprice(key: uuid.UUID, amount: Decimal) -> str:
        await asyncio.sleep(0)
        return f"{key}:{amount}"

    @app.task(name="ctx", bind=True)
    def ctx(c: JobContext, n: int) -> list[Any]:
        c.extend_lease(10)
        return [c.job_id, c.attempt, c.task, n]

    with eager(app) as runner:
        job = add.delay(2, 3)
        assert calls == [(2, 3)] and job.result() == 5 and job.state() == "succeeded"
        key = uuid.UUID(int=1)
        assert aprice.delay(key, Decimal("1.50")).get() == f"{key}:1.50"
        assert ctx.delay(9).result() == [3, 1, "ctx", 9]
        batch = app.enqueue_batch(add, [[1, 1], {"a": 2, "b": 2}])
        assert [j.result() for j in batch] == [2, 4]
        assert [j.result() for j in app.enqueue_many([add.spec(5, 5)])] == [10]
        # validated as ever
        with pytest.raises(InvalidJobError):
            add.delay(object())
        assert len(runner.jobs) == 6
        assert_enqueued(add, [2, 3])
        assert_enqueued(aprice, kwargs={}, count=1)
        assert_not_enqueued(add, [9, 9])
        assert [j["args"] for j in enqueued_jobs(app, add)] == [[2, 3], [1, 1], [], [5, 5]]
    assert app._eager is None and app._pool is None  # nothing ever connected


def test_async_enqueue_and_async_handlers_in_eager_mode() -> None:
    app = make_app()

    @app.task(name="double")
    async def double(n: int) -> int:
        return n * 2

    @app.task(name="sync_one")
    def sync_one() -> int:
        return double.delay(21).result()  # an async handler from sync code inside a loop

    async def main() -> list[Any]:
        a = await double.defer_async(4)
        b = await app.enqueue_async(sync_one)
        return [await a.wait(), b.result()]

    with eager(app):
        assert asyncio.run(main()) == [8, 42]


def test_failures_propagate_or_are_recorded() -> None:
    app = make_app()

    @app.task(name="boom")
    def boom(n: int) -> None:
        raise ValueError(f"bad {n}")

    @app.task(name="again", bind=True)
    def again(ctx: JobContext) -> None:
        ctx.retry(countdown=5)

    @app.task(name="opaque")
    def opaque() -> object:
        return object()

    with eager(app):
        with pytest.raises(ValueError, match="bad 1"):
            boom.delay(1)
        with pytest.raises(Retry):
            again.delay()  # no retries in eager mode
    with eager(app, propagate=False) as runner:
        job = boom.delay(2)
        with pytest.raises(JobFailed, match="ValueError: bad 2") as info:
            job.result()
        assert info.value.kind == "error" and job.state() == "failed"
        assert runner.jobs[0].error is not None
        with pytest.raises(JobFailed, match="not JSON"):
            opaque.delay().result()
