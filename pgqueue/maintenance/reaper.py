"""The reaper: expired leases go back to ``queued`` (or to ``failed`` with reason "lost").

Runs every ``interval`` in each worker; an advisory lock taken inside the reaping
statement lets one worker at a time do the pass, the others skip it. Each pass handles
at most ``limit`` jobs per statement and repeats while a full batch came back. Also
removes workers that stopped heartbeating. A pass that fails (database away) is logged
and tried next time. Jobs it ends (failed, or cancelled) are told on the done channel by
the statement, and their waiting dependents are resolved after it.
"""

from __future__ import annotations

import logging

from psycopg_pool import AsyncConnectionPool

from ..sql import query
from .dependencies import resolve_dependents
from .service import Service

log = logging.getLogger("pgqueue.maintenance")


class Reaper(Service):
    name = "reaper"

    def __init__(
        self,
        pool: AsyncConnectionPool,
        schema: str,
        interval: float,
        dead_worker_after: float,
        limit: int = 1000,
    ) -> None:
        self.pool = pool
        self.schema = schema
        self.interval = interval
        self.dead_worker_after = dead_worker_after
        self.limit = limit
        self.requeued = 0
        self.failed = 0

    async def run_once(self) -> int:
        """One pass; how many expired jobs it handled (0 if another worker has the lock).

        Each statement is its own autocommit transaction (see ``job_reap_expired``).
        """
        handled = 0
        ended: list[int] = []
        async with self.pool.connection() as conn:
            while True:
                cur = await conn.execute(
                    query(self.schema, "job_reap_expired"),
                    {"limit": self.limit, "key": f"{self.schema}.maintenance"},
                )
                rows = await cur.fetchall()
                for job_id, state, _ in rows:
                    if state == "queued":
                        self.requeued += 1
                        log.warning(
                            "job %d: lease expired (worker lost); back to queued",
                            job_id,
                            extra={"job_id": job_id, "event": "reaped"},
                        )
                    else:
                        ended.append(job_id)
                        self.failed += 1
                        log.warning(
                            "job %d: lease expired and attempts are used up; failed (lost)",
                            job_id,
                            extra={"job_id": job_id, "event": "reaped_failed"},
                        )
                handled += len(rows)
                if len(rows) < self.limit:
                    break
            if ended:
                await resolve_dependents(conn, self.schema, ended)
            cur = await conn.execute(
                query(self.schema, "worker_prune_dead"), {"older_than": self.dead_worker_after}
            )
            for (worker_id,) in await cur.fetchall():
                log.info(
                    "removed worker %s: no heartbeat for %.0fs", worker_id, self.dead_worker_after
                )
        return handled
