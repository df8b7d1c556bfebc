"""``ctx.transaction()``: a handler's database work in the transaction that completes its
job, so that its effects and the job's success commit together or not at all.

    @app.task(pass_context=True)
    def score(ctx, run_id):
        value = evaluate(run_id)                      # the long part, outside
        with ctx.transaction() as conn:               # async: async with
            conn.execute("INSERT INTO scores VALUES (%s, %s)", (run_id, value))
        return value                                  # the result, same transaction

The block hands out a connection (psycopg ``Connection`` with ``with``,
``AsyncConnection`` with ``async with``) in an open transaction. Leaving it normally does
not commit: the transaction stays open until the handler returns, then the job's fenced
completion (``job_complete_fenced``: this id, this attempt, this worker, still running)
runs in it, with the handler's return value as the result, and it all commits at once.
- The handler raises (in the block or after it), or is cancelled, or its lease is lost
  while it runs: everything rolls back; the job fails, retries or goes to whoever owns it
  now, as without a transaction.
- The completion matches no row (the lease was lost and the job reclaimed meanwhile):
  everything rolls back and the worker logs the lease loss; the other worker's run is the
  one that counts.
- The worker is killed: the server rolls the transaction back when the connection drops;
  the job is reclaimed after its lease and runs again, so its effects exist exactly once.
- The commit itself fails (the connection broke during COMMIT): the outcome is unknown;
  the worker treats the job as failed with a retry, whose fenced write finds the job
  already done if the commit went through.

Keep the block short and at the end of the handler: the transaction holds its row locks
and a connection until the handler returns. Connections come from a pool per worker
process (opened on first use, up to ``concurrency`` connections, named
``pgqueue transaction <worker id>``); behind pgbouncer in transaction mode a transaction
keeps its server connection, so this works there too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from types import TracebackType
from typing import Any

import psycopg

from ..db import application_name, first_line
from ..pools import AsyncPool, Pool
from ..sql import query

log = logging.getLogger("pgqueue.worker")


class TransactionSource:
    """The worker's pools for handler transactions (sync and async), opened on first
    use; ``close()`` at shutdown."""

    def __init__(
        self, dsn: str, schema: str, worker_id: str, size: int, pooler: bool = False
    ) -> None:
        self.dsn = dsn
        self.schema = schema
        self.worker_id = worker_id
        self.size = max(1, size)
        self.kwargs: dict[str, Any] = {
            "autocommit": False,  # the first statement opens the transaction
            "application_name": application_name(dsn, "transaction", worker_id),
        }
        if pooler:
            self.kwargs["prepare_threshold"] = None  # see pgqueue/pooler.py
        self._sync: Pool | None = None
        self._async: AsyncPool | None = None
        self._async_open: asyncio.Future[None] | None = None
        self._lock = threading.Lock()

    def sync_pool(self) -> Pool:
        with self._lock:  # handlers' threads may ask at once: one pool
            return self._sync_pool()

    def _sync_pool(self) -> Pool:
        if self._sync is None:
            self._sync = Pool(
                self.dsn,
                min_size=0,
                max_size=self.size,
                kwargs=self.kwargs,
                name="pgqueue-transaction",
                open=True,
                timeout=30,
            )
        return self._sync

    async def async_pool(self) -> AsyncPool:
        if self._async is None:  # made and opened once, however many handlers ask at once
            self._async = AsyncPool(
                self.dsn,
                min_size=0,
                max_size=self.size,
                kwargs=self.kwargs,
                name="pgqueue-atransaction",
                open=False,
                timeout=30,
            )
            self._async_open = asyncio.ensure_future(self._async.open())
        assert self._async_open is not None
        await self._async_open
        return self._async

    async def close(self) -> None:
        if self._async is not None:
            await self._async.close()
        if self._sync is not None:
            await asyncio.to_thread(self._sync.close)

    def open(self, job_id: int, attempt: int) -> HandlerTransaction:
        return HandlerTransaction(self, job_id, attempt)


class HandlerTransaction:
    """What ``ctx.transaction()`` returns: ``with`` it (sync handlers) or ``async with``
    it (async handlers) for the connection. See the module docstring."""

    def __init__(self, source: TransactionSource, job_id: int, attempt: int) -> None:
        self.source = source
        self.job_id = job_id
        self.attempt = attempt
        self.conn: psycopg.Connection[Any] | None = None
        self.aconn: psycopg.AsyncConnection[Any] | None = None
        self.open = False  # a transaction waits for the handler's return

    # -- the handler's side ---------------------------------------------------------------
    def __enter__(self) -> psycopg.Connection[Any]:
        if self.aconn is not None:
            raise RuntimeError("this job's transaction is async: use `async with`")
        if self.conn is None:
            self.conn = self.source.sync_pool().getconn()
        self.open = True
        return self.conn

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self._rollback_sync()

    async def __aenter__(self) -> psycopg.AsyncConnection[Any]:
        if self.conn is not None:
            raise RuntimeError("this job's transaction is sync: use `with`")
        if self.aconn is None:
            self.aconn = await (await self.source.async_pool()).getconn()
        self.open = True
        return self.aconn

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            await self.rollback()

    # -- the worker's side --------------------------------------------------------------
    def _rollback_sync(self) -> None:
        conn, self.conn, self.open = self.conn, None, False
        if conn is not None:
            # Closed, not rolled back: a timed-out handler's thread may still be using it
            # (the server rolls back a closed connection's transaction; the pool replaces it).
            with contextlib.suppress(psycopg.Error):
                conn.close()
            self.source.sync_pool().putconn(conn)

    async def rollback(self) -> None:
        """Roll back whatever the handler did (it failed, was cancelled or lost its
        lease); never raises."""
        if self.conn is not None:
            await asyncio.to_thread(self._rollback_sync)
        aconn, self.aconn, self.open = self.aconn, None, False
        if aconn is not None:
            with contextlib.suppress(psycopg.Error):
                await aconn.rollback()
            await (await self.source.async_pool()).putconn(aconn)

    def _params(self, worker_id: str, result_json: str) -> dict[str, Any]:
        return {
            "done": f'{{"{self.job_id}":[{self.attempt},{result_json}]}}',
            "ids": [self.job_id],
            "worker_id": worker_id,
        }

    def _complete_sync(self, result_json: str) -> tuple[bool, bool]:
        conn = self.conn
        assert conn is not None
        try:
            rows = conn.execute(
                query(self.source.schema, "job_complete_fenced"),
                self._params(self.source.worker_id, result_json),
            ).fetchall()
            if not rows:
                conn.rollback()
                return False, False
            conn.commit()
            return True, bool(rows[0][1])
        finally:
            self.conn, self.open = None, False
            self.source.sync_pool().putconn(conn)

    async def _complete_async(self, result_json: str) -> tuple[bool, bool]:
        aconn = self.aconn
        assert aconn is not None
        try:
            cur = await aconn.execute(
                query(self.source.schema, "job_complete_fenced"),
                self._params(self.source.worker_id, result_json),
            )
            rows = await cur.fetchall()
            if not rows:
                await aconn.rollback()
                return False, False
            await aconn.commit()
            return True, bool(rows[0][1])
        finally:
            self.aconn, self.open = None, False
            await (await self.source.async_pool()).putconn(aconn)

    async def complete(self, result_json: str) -> tuple[bool, bool]:
        """Complete the job in the handler's transaction and commit: (committed, whether a
        job waits for this one). (False, False): the fenced completion matched nothing,
        everything was rolled back. Raises psycopg's error if the statement or the commit
        failed (the transaction is then rolled back, or its fate is unknown)."""
        if self.conn is not None:
            return await asyncio.to_thread(self._complete_sync, result_json)
        return await self._complete_async(result_json)


def describe_commit_failure(job_id: int, exc: BaseException) -> str:
    return (
        f"job {job_id}: committing its transaction failed ({first_line(exc)}); whether it "
        "committed is unknown, so the job is retried (a retry of a job that did commit "
        "finds it done)"
    )
