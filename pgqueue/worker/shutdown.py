"""A worker's graceful stop (SIGTERM, ``request_stop``): stop claiming, let running jobs
finish up to ``shutdown_timeout``, cancel the rest, write every outcome, stop the
services, hand what is still held back to the queue (fenced: ``job_release_fenced``,
no attempt used) and remove the worker's row.

If the database cannot be reached for the hand-back, it says so and leaves the jobs to
the reaper (their leases expire); outcomes not written within 10 s are lost the same
way and the jobs run again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

import psycopg

from ..db import first_line
from ..maintenance.dependencies import resolve_dependents
from .heartbeat import Heartbeat

if TYPE_CHECKING:
    from .loop import Worker

log = logging.getLogger("pgqueue.worker")


async def shut_down(
    worker: Worker, background: list[asyncio.Task[Any]], heartbeat: Heartbeat
) -> None:
    """Stop ``worker`` as the module docstring says; never raises a database error."""
    assert worker.completer is not None and worker.dispatcher is not None
    worker._stopping = True
    worker.dispatcher.stop_starting()
    tasks = worker.dispatcher.tasks_running()
    if tasks and not worker._immediate and worker.config.shutdown_timeout > 0:
        deadline = time.monotonic() + worker.config.shutdown_timeout
        pending = set(tasks)
        while pending and not worker._immediate:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            _, pending = await asyncio.wait(pending, timeout=min(left, 0.1))
    for task in worker.dispatcher.tasks_running():
        task.cancel()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
    if not await worker.completer.drain(timeout=10):
        log.warning("could not write every result before exit; those jobs will be re-run")
    for t in background:
        t.cancel()
    await asyncio.gather(*background, return_exceptions=True)
    unfinished = worker.held.snapshot()
    try:
        async with worker.pool.connection() as conn:
            if unfinished:
                cur = await conn.execute(
                    worker.app.query("job_release_fenced"),
                    {
                        "ids": list(unfinished),
                        "attempts": list(unfinished.values()),
                        "worker_id": worker.id,
                    },
                )
                rows = await cur.fetchall()
                released = [r[0] for r in rows]
                ended = [r[0] for r in rows if r[2] == "cancelled"]  # (cancel requested)
                if ended:
                    await resolve_dependents(conn, worker.app.schema, ended)
                shown = ", ".join(map(str, released[:20]))
                more = f" and {len(released) - 20} more" if len(released) > 20 else ""
                log.warning(
                    "handed %d unfinished job(s) back to the queue: %s%s",
                    len(released),
                    shown,
                    more,
                )
            await conn.execute(worker.app.query("worker_delete"), {"id": worker.id})
    except psycopg.Error as exc:
        log.warning("could not release jobs at shutdown (the reaper will): %s", first_line(exc))
    heartbeat.stop()
    if worker.completer is not None:
        worker.completer.joblog.flush()  # the last per-job lines before this one
    log.info("worker %s stopped", worker.id)
