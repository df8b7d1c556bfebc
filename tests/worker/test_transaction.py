"""ctx.transaction(): the handler's database work and the job's success commit together, or
not at all (sync and async handlers, failures, a lost lease). The crash test with real
kills is tests/crash/test_transaction_kill.py."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest

from pgqueue import App, JobContext, PgQueueError, RetryPolicy
from tests.helpers import wait_until
from tests.worker.inproc import running
from tests.worker.procs import wait_state

Conn = psycopg.Connection[Any]


@pytest.fixture
def ledger(conn: Conn, schema: str) -> str:
    """A table the handlers write to: one row per committed run."""
    conn.execute(f'CREATE TABLE "{schema}".ledger (job_id bigint, attempt int, note text)')
    return f'"{schema}".ledger'


def _rows(conn: Conn, ledger: str) -> list[tuple[Any, ...]]:
    return conn.execute(f"SELECT job_id, attempt, note FROM {ledger} ORDER BY 1, 2").fetchall()


def test_sync_handler_effects_and_success_commit_together(
    app: App, conn: Conn, schema: str, ledger: str
) -> None:
    @app.task(name="book", pass_context=True)
    def book(ctx: JobContext, amount: int) -> dict[str, int]:
        with ctx.transaction() as tx:
            tx.execute(f"INSERT INTO {ledger} VALUES (%s, %s, 'sync')", (ctx.job_id, ctx.attempt))
            # inside the transaction, the job is still running: nothing is committed yet
        return {"booked": amount}

    job_id = book.defer(7)
    with running(app):
        row = wait_state(conn, schema, job_id, "succeeded")
    assert row["result"] == {"booked": 7} and row["attempt"] == 1
    assert _rows(conn, ledger) == [(job_id, 1, "sync")]


def test_async_handler_uses_async_with(app: App, conn: Conn, schema: str, ledger: str) -> None:
    @app.task(name="abook", pass_context=True)
    async def abook(ctx: JobContext) -> str:
        async with ctx.transaction() as tx:
            await tx.execute(f"INSERT INTO {ledger} VALUES (%s, %s, 'async')", (ctx.job_id, 1))
        return "ok"

    job_id = abook.defer()
    with running(app):
        row = wait_state(conn, schema, job_id, "succeeded")
    assert row["result"] == "ok"
    assert _rows(conn, ledger) == [(job_id, 1, "async")]


def test_a_handler_that_raises_after_its_block_leaves_nothing(
    app: App, conn: Conn, schema: str, ledger: str
) -> None:
    @app.task(name="flaky", pass_context=True, max_attempts=2, retry=RetryPolicy(0.05, jitter=0))
    def flaky(ctx: JobContext) -> str:
        with ctx.transaction() as tx:
            tx.execute(f"INSERT INTO {ledger} VALUES (%s, %s, 'x')", (ctx.job_id, ctx.attempt))
        if ctx.attempt == 1:
            raise RuntimeError("after the block")  # rolls the insert back
        return "second"

    @app.task(name="inside", pass_context=True, max_attempts=1)
    def inside(ctx: JobContext) -> None:
        with ctx.transaction() as tx:
            tx.execute(f"INSERT INTO {ledger} VALUES (%s, %s, 'y')", (ctx.job_id, ctx.attempt))
            raise ValueError("inside the block")

    first, second = flaky.defer(), inside.defer()
    with running(app):
        assert wait_state(conn, schema, first, "succeeded")["attempt"] == 2
        row = wait_state(conn, schema, second, "failed")
    assert _rows(conn, ledger) == [(first, 2, "x")]  # attempt 1's insert rolled back
    assert row["errors"][-1]["type"] == "builtins.ValueError"


def test_a_lost_lease_rolls_the_handlers_work_back(
    app: App, conn: Conn, schema: str, ledger: str
) -> None:
    """The job is reclaimed by someone else while the handler runs (faked: its attempt is
    moved on): the fenced completion matches nothing and the insert rolls back."""
    inside, go = threading.Event(), threading.Event()

    @app.task(name="slowbook", pass_context=True)
    def slowbook(ctx: JobContext) -> str:
        with ctx.transaction() as tx:
            tx.execute(f"INSERT INTO {ledger} VALUES (%s, %s, 'lost')", (ctx.job_id, 1))
        inside.set()
        go.wait(10)
        return "too late"

    job_id = slowbook.defer()
    with running(app) as worker:
        wait_until(inside.is_set, what="handler inside")
        conn.execute(
            f'UPDATE "{schema}".jobs SET attempt = attempt + 1, worker_id = %s WHERE id = %s',
            ("someone-else", job_id),
        )
        go.set()
        wait_until(lambda: worker.completer is not None and worker.completer.lost == 1)
    assert _rows(conn, ledger) == []
    assert wait_state(conn, schema, job_id, "running")["worker_id"] == "someone-else"


def test_transaction_outside_a_worker_says_so() -> None:
    ctx = JobContext(1, "t", 1, "default", "w")
    with pytest.raises(PgQueueError, match="needs a worker"):
        ctx.transaction()
