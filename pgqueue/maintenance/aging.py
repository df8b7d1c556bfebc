"""Priority aging: jobs waiting behind higher-priority work move up, one step a period.

Every worker runs it for its own queues; only queues with ``priority_aging`` set (``pgqueue
queues set QUEUE --priority-aging 30s``) are touched, and the statement's compare-and-set
on the queue row makes it one pass per period per queue however many workers run it. A
pass that fails (database away, a lock timeout) is logged and tried next time.
"""

from __future__ import annotations

import logging

from psycopg_pool import AsyncConnectionPool

from ..sql import query
from .service import Service

log = logging.getLogger("pgqueue.maintenance")


class Ager(Service):
    """Runs ``job_age_priorities`` every ``interval`` seconds (the queues' own aging
    periods decide when a pass really ages anything)."""

    name = "priority aging"

    def __init__(
        self,
        pool: AsyncConnectionPool,
        schema: str,
        queues: list[str],
        interval: float = 1.0,
        limit: int = 1000,
    ) -> None:
        self.pool = pool
        self.schema = schema
        self.queues = queues
        self.interval = interval
        self.limit = limit
        self.aged = 0

    async def run_once(self) -> int:
        """One pass; how many jobs moved up a priority step."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                query(self.schema, "job_age_priorities"),
                {"queues": self.queues, "limit": self.limit},
            )
            moved = len(await cur.fetchall())
        if moved:
            self.aged += moved
            log.info("priority aging: %d job(s) moved up one step", moved)
        return moved
