"""Rolling deploys: fail the jobs of tasks that no live worker has known for too long.

A worker whose app does not know a job's task hands the job back without using an
attempt and notes (queue, task) in ``unknown_tasks`` (the completer's
``job_release_unknown_fenced``); a worker that knows it takes it from there. Each worker
registers its task names in its ``workers`` row. This service runs
``unknown_task_sweep`` (one worker at a time through an advisory lock in the statement):
notes a live worker of the queue now knows are deleted, and the queued jobs of notes
that nobody has known for ``timeout`` seconds end ``failed`` with kind ``unknown_task``,
but only once this worker has itself run for ``timeout``, so that after the whole fleet
was down every version gets that long to come back. A pass that fails (database away)
is logged and tried next time.
"""

from __future__ import annotations

import logging
import time

from psycopg_pool import AsyncConnectionPool

from ..sql import query
from .dependencies import resolve_dependents
from .service import Service

log = logging.getLogger("pgqueue.maintenance")


class UnknownTasks(Service):
    name = "unknown-tasks"

    def __init__(
        self, pool: AsyncConnectionPool, schema: str, timeout: float, limit: int = 1000
    ) -> None:
        self.pool = pool
        self.schema = schema
        self.timeout = timeout
        # A pass costs one probe of a table that is empty outside deploys: every 5 s, or
        # a quarter of a shorter timeout.
        self.interval = max(0.2, min(timeout / 4, 5.0))
        self.limit = limit
        self.started = time.monotonic()
        self.failed = 0

    async def run_once(self) -> int:
        """One pass; how many jobs it failed (0 if another worker has the lock)."""
        may_fail = time.monotonic() - self.started >= self.timeout
        ended: list[int] = []
        async with self.pool.connection() as conn:
            while True:
                cur = await conn.execute(
                    query(self.schema, "unknown_task_sweep"),
                    {
                        "key": f"{self.schema}.unknown_tasks",
                        "timeout": self.timeout,
                        "may_fail": may_fail,
                        "limit": self.limit,
                    },
                )
                rows = await cur.fetchall()
                for job_id, queue, task, _ in rows:
                    ended.append(job_id)
                    log.warning(
                        "job %d: no live worker of queue %s has known its task %r for %.0fs; "
                        "failed (unknown_task)",
                        job_id,
                        queue,
                        task,
                        self.timeout,
                        extra={"job_id": job_id, "task": task, "event": "unknown_task"},
                    )
                if len(rows) < self.limit:
                    break
            if ended:
                self.failed += len(ended)
                await resolve_dependents(conn, self.schema, ended)
        return len(ended)
