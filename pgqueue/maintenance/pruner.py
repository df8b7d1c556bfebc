"""The pruner: finished jobs past their retention are deleted, in small batches.

Retention per state (default: succeeded 7 days, failed 30 days, cancelled 7 days).
Runs every ``interval`` in each worker; batches of ``limit`` rows with SKIP LOCKED make
concurrent pruners harmless, so no lock is needed. A pass goes on while batches come
back full (up to ``max_batches``), so it keeps up with any sustained rate; each batch
is its own short transaction. Failures are logged and
tried next time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from psycopg_pool import AsyncConnectionPool

from ..sql import query
from .service import Service

log = logging.getLogger("pgqueue.maintenance")

DAY = 86_400.0


@dataclass
class Retention:
    """Seconds a finished job is kept, per state."""

    succeeded: float = 7 * DAY
    failed: float = 30 * DAY
    cancelled: float = 7 * DAY


class Pruner(Service):
    name = "prune"

    def __init__(
        self,
        pool: AsyncConnectionPool,
        schema: str,
        retention: Retention,
        interval: float = 10.0,
        limit: int = 1000,
        max_batches: int = 1000,
    ) -> None:
        self.pool = pool
        self.schema = schema
        self.retention = retention
        self.interval = interval
        self.limit = limit
        self.max_batches = max_batches
        self.deleted = 0

    async def run_once(self) -> int:
        """One pass: up to ``max_batches`` batches; returns how many jobs it deleted."""
        params = {
            "keep_succeeded": self.retention.succeeded,
            "keep_failed": self.retention.failed,
            "keep_cancelled": self.retention.cancelled,
            "limit": self.limit,
        }
        deleted = 0
        async with self.pool.connection() as conn:
            for _ in range(self.max_batches):
                cur = await conn.execute(query(self.schema, "job_prune_finished"), params)
                n = len(await cur.fetchall())
                deleted += n
                if n < self.limit:
                    break
        if deleted:
            log.info("pruned %d finished job(s) past their retention", deleted)
        self.deleted += deleted
        return deleted
