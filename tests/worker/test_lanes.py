"""Jobs run on lanes (pgqueue/worker/dispatch.py): what a handler sees must be what it
would see in an asyncio task of its own, and ``concurrency`` still bounds what runs."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from typing import Any

import psycopg

from pgqueue import App
from tests.helpers import wait_until
from tests.worker.inproc import running
from tests.worker.procs import job, wait_state

Conn = psycopg.Connection[Any]

tenant: contextvars.ContextVar[str] = contextvars.ContextVar("tenant", default="none")


def test_a_stopped_job_leaves_its_lane_fit_for_the_next(app: App, conn: Conn, schema: str) -> None:
    started = threading.Event()

    @app.task(name="forever")
    async def forever() -> None:
        started.set()
        await asyncio.sleep(60)

    @app.task(name="times_out")
    async def times_out() -> dict[str, Any]:
        task = asyncio.current_task()
        assert task is not None
        pending_cancels = task.cancelling()
        try:
            async with asyncio.timeout(0.05):
                await asyncio.sleep(5)
        except TimeoutError:
            return {"timed_out": True, "pending_cancels": pending_cancels}
        return {"timed_out": False, "pending_cancels": pending_cancels}

    @app.task(name="sets_tenant")
    async def sets_tenant(value: str) -> str:
        before = tenant.get()
        tenant.set(value)
        await asyncio.sleep(0)
        return before

    @app.task(name="reads_tenant")
    async def reads_tenant() -> str:
        return tenant.get()

    # One lane: every job below runs on the same one, one after another.
    with running(app, concurrency=1) as worker:
        stopped = forever.defer()
        assert started.wait(10)
        assert app.admin.cancel([stopped]) == {stopped: "cancelling"}
        wait_state(conn, schema, stopped, "cancelled")
        ids = [times_out.defer(), sets_tenant.defer("acme"), reads_tenant.defer()]
        rows = [wait_state(conn, schema, i, "succeeded") for i in ids]
        assert worker.dispatcher is not None and len(worker.dispatcher.lanes) == 1
    # The lane was cancelled to stop the first job and un-cancelled after it, so the
    # next job's asyncio.timeout fires as a timeout (not as a cancellation of the job).
    assert rows[0]["result"] == {"timed_out": True, "pending_cancels": 0}
    # Each job has its own copy of the context: a value one job sets is not the next's.
    assert [r["result"] for r in rows[1:]] == ["none", "none"]


def test_waiting_handlers_overlap_up_to_concurrency(app: App, conn: Conn, schema: str) -> None:
    now = {"running": 0, "peak": 0}

    @app.task(name="slow")
    async def slow(i: int) -> int:
        now["running"] += 1
        now["peak"] = max(now["peak"], now["running"])
        await asyncio.sleep(0.2)
        now["running"] -= 1
        return i

    @app.task(name="quick")
    async def quick(i: int) -> int:
        return i

    with running(app, concurrency=4) as worker:
        slow_ids = [slow.defer(i) for i in range(12)]
        for i in slow_ids:
            wait_state(conn, schema, i, "succeeded")
        # Handlers that never wait run back to back; no more lanes than concurrency.
        quick_ids = app.enqueue_batch("quick", [[i] for i in range(300)])
        wait_until(
            lambda: (
                conn.execute(
                    f'SELECT count(*) FROM "{schema}".succeeded_jobs WHERE task = %s', ("quick",)
                ).fetchone()
                == (300,)
            ),
            timeout=20,
            what="300 quick jobs succeeded",
        )
        assert worker.dispatcher is not None and len(worker.dispatcher.lanes) <= 4
    assert now["peak"] == 4  # four at once: a waiting lane handed the next job on
    assert [job(conn, schema, i)["result"] for i in quick_ids[:3]] == [0, 1, 2]


def test_a_handler_cancelling_its_own_task_spares_the_next_job(
    app: App, conn: Conn, schema: str
) -> None:
    @app.task(name="self_cancel")
    async def self_cancel() -> int:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()  # and returns without waiting: the cancel is left pending on the lane
        return 1

    @app.task(name="innocent")
    async def innocent() -> int:
        await asyncio.sleep(0.01)
        return 2

    # Both claimed at once (prefetch 1): the second waits in the buffer and runs next on
    # the same lane, the one that carries the first handler's pending cancel.
    first, second = self_cancel.defer(), innocent.defer()
    with running(app, concurrency=1, prefetch=1):
        wait_state(conn, schema, first, "succeeded")
        row = wait_state(conn, schema, second, "succeeded")
    assert row["result"] == 2 and row["errors"] == []


def test_a_failing_handlers_traceback_is_its_own(app: App, conn: Conn, schema: str) -> None:
    @app.task(name="chained", max_attempts=1)
    async def chained() -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        loop.call_soon(fut.set_exception, KeyError("from the future"))
        with contextlib.suppress(KeyError):
            await fut  # the task throws the future's error in: through the lane's _Step
        raise ValueError("the handler's own")

    with running(app):
        row = wait_state(conn, schema, chained.defer(), "failed")
    tb = row["errors"][-1]["traceback"]
    assert "ValueError: the handler's own" in tb
    assert "During handling" not in tb and "dispatch.py" not in tb
