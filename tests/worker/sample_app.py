"""The app that subprocess workers in the worker and crash tests run.

DSN and schema come from ``PGQUEUE_DSN`` / ``PGQUEUE_SCHEMA`` (the test sets them). Every
task records what it did in ``<schema>.effects`` (created by the test, see
``tests/worker/procs.py``) so that a test can count how often a handler really ran.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from typing import Any

from pgqueue import App, RetryPolicy
from pgqueue.pools import Pool
from pgqueue.worker import JobContext

app = App(strict_tasks=False)

# Retries come back quickly (a job that failed while PostgreSQL was down, for one).
FAST_RETRY = RetryPolicy(base=0.1, factor=2.0, max_delay=1.0, jitter=0.0)

_pool: Pool | None = None
_pool_lock = threading.Lock()


def _effects_pool() -> Pool:
    global _pool
    with _pool_lock:
        if _pool is None:
            # pgqueue's pool class: after a failover it drops the connections the old
            # primary closed and reconnects within a second (psycopg_pool's own waits
            # 1, 2, 4 ... s between attempts), so handlers recover with the worker.
            _pool = Pool(
                app.dsn,
                min_size=1,
                max_size=24,
                open=True,
                # No prepared statements: tests run this app behind pgbouncer in
                # transaction mode too, where they clash (as any app's own would).
                kwargs={"autocommit": True, "prepare_threshold": None},
                name="sample-app",
                timeout=10,
            )
        return _pool


def _record(ctx: JobContext, note: str | None = None) -> dict[str, Any]:
    """One row in effects for this run of the handler; the job's result names the worker."""
    with _effects_pool().connection() as conn:
        conn.execute(
            f'INSERT INTO "{app.schema}".effects (job_id, attempt, worker_pid, lease_lost, note) '
            "VALUES (%s, %s, %s, %s, %s)",
            (ctx.job_id, ctx.attempt, os.getpid(), ctx.lease_lost.is_set(), note),
        )
    return {"pid": os.getpid(), "attempt": ctx.attempt}


def _duration(ctx: JobContext, seconds: float, later: float | None) -> float:
    """``seconds`` on the first attempt; ``later`` (if given) on the attempts after it."""
    return seconds if ctx.attempt == 1 or later is None else later


@app.task(name="record", pass_context=True, retry=FAST_RETRY)
def record(ctx: JobContext, *_args: Any) -> dict[str, Any]:
    return _record(ctx)


@app.task(name="record_tx", pass_context=True, retry=FAST_RETRY)
def record_tx(ctx: JobContext, pause: float = 0.0) -> dict[str, Any]:
    """Record in the job's own transaction (ctx.transaction()), then linger ``pause``
    seconds before returning: the row commits with the job's success, or not at all."""
    with ctx.transaction() as tx:
        tx.execute(
            f'INSERT INTO "{app.schema}".effects (job_id, attempt, worker_pid, lease_lost, note) '
            "VALUES (%s, %s, %s, false, 'tx')",
            (ctx.job_id, ctx.attempt, os.getpid()),
        )
    time.sleep(pause)  # a kill here must roll the insert back
    return {"pid": os.getpid(), "attempt": ctx.attempt}


@app.task(name="slow", pass_context=True, retry=FAST_RETRY)
def slow(ctx: JobContext, seconds: float, later: float | None = None) -> dict[str, Any]:
    """Sleep in small steps (stopping early if the lease is lost), then record."""
    deadline = time.monotonic() + _duration(ctx, seconds, later)
    while time.monotonic() < deadline and not ctx.lease_lost.is_set():
        time.sleep(0.02)
    return _record(ctx, "slow")


@app.task(name="slow_async", pass_context=True, retry=FAST_RETRY)
async def slow_async(ctx: JobContext, seconds: float, later: float | None = None) -> dict[str, Any]:
    await asyncio.sleep(_duration(ctx, seconds, later))
    return await asyncio.to_thread(_record, ctx, "slow_async")


@app.task(name="blocking_async", pass_context=True, retry=FAST_RETRY)
async def blocking_async(ctx: JobContext, seconds: float) -> dict[str, Any]:
    """A badly written async handler: it blocks the event loop for ``seconds``."""
    time.sleep(seconds)
    return _record(ctx, "blocking_async")


@app.task(name="span", pass_context=True, retry=FAST_RETRY)
def span(ctx: JobContext, seconds: float = 0.0) -> dict[str, Any]:
    """Record 'start', sleep, record 'end': a test can count how many ran at once."""
    _record(ctx, "start")
    time.sleep(seconds)
    return _record(ctx, "end")


@app.task(name="always_raises", pass_context=True, retry=FAST_RETRY)
def always_raises(ctx: JobContext) -> None:
    _record(ctx, "raises")
    raise RuntimeError(f"always_raises: attempt {ctx.attempt}")


@app.task(name="kill_self", pass_context=True, retry=FAST_RETRY)
def kill_self(ctx: JobContext) -> None:
    """Record, then SIGKILL the worker process that runs it."""
    _record(ctx, "kill_self")
    os.kill(os.getpid(), signal.SIGKILL)


# Periodic tasks, only when the test asks for them (SAMPLE_PERIODIC=1): every worker runs
# the scheduler of every periodic task, so they would add jobs to other tests' counts.
# One tick a second on queue 'periodic'; grace 0.9 s (< 1 tick), so after a gap of several
# ticks only the newest one can be on time (tests/worker/test_periodic.py).
if os.environ.get("SAMPLE_PERIODIC") == "1":

    @app.periodic(every=1, name="tick_latest", queue="periodic", grace=0.9, pass_context=True)
    def tick_latest(ctx: JobContext) -> dict[str, Any]:
        return _record(ctx, "tick_latest")

    @app.periodic(
        every=1,
        name="tick_none",
        catch_up="none",
        queue="periodic",
        grace=0.9,
        pass_context=True,
    )
    def tick_none(ctx: JobContext) -> dict[str, Any]:
        return _record(ctx, "tick_none")


@app.task(name="evaluate", pass_context=True, retry=FAST_RETRY)
def evaluate(ctx: JobContext, n: int, seconds: float = 0.0) -> dict[str, Any]:
    """One evaluation: a score of ``n * 10`` after ``seconds``."""
    time.sleep(seconds)
    _record(ctx, "evaluate")
    return {"n": n, "score": n * 10, "pid": os.getpid()}


@app.task(name="summarize", pass_context=True, retry=FAST_RETRY)
def summarize(ctx: JobContext, ids: list[int]) -> dict[str, Any]:
    """Runs after the evaluations ``ids`` (after=): reads their results and sums them."""
    _record(ctx, "summarize")
    scores = [app.job(i).result(timeout=10)["score"] for i in ids]
    return {"total": sum(scores), "count": len(scores)}


@app.task(name="fails_until", pass_context=True, retry=FAST_RETRY)
def fails_until(ctx: JobContext, path: str) -> dict[str, Any]:
    """Raises until the file ``path`` exists (a test creates it to let a retry succeed)."""
    _record(ctx, "fails_until")
    if not os.path.exists(path):
        raise RuntimeError(f"fails_until: {path} does not exist yet <b>bold?</b>")
    return {"ok": True, "attempt": ctx.attempt}
