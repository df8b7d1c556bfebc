"""Dependencies (``after=``): moving waiting jobs on once the jobs they wait for finish.

``resolve_dependents`` runs after every statement that finishes jobs has committed (the
completer's batches, the reaper, a shutdown that ends cancelled jobs): the jobs waiting
for them are queued when all their dependencies succeeded, or cancelled, down the chain,
when one failed or was cancelled. It runs as a statement of its own, after the commit:
a job whose two dependencies finish at the same moment is then seen ready by the later.

``DependencySweep`` repairs what that misses: a worker that died between its commit and
its resolve call, or a dependent enqueued inside a caller's transaction that committed
just as its last dependency finished. Every ``interval`` (10 s) in each worker, one
worker at a time (an advisory lock inside the statement, like the reaper), it finds
waiting jobs whose dependencies have all finished and resolves them. Finding them takes
no lock; only such jobs' dependencies go to ``resolve_dependents``, so jobs that wait
for good reason cost one read per pass.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from ..db import first_line
from ..sql import query
from .service import Service

log = logging.getLogger("pgqueue.maintenance")


async def resolve_dependents(conn: AsyncConnection[Any], schema: str, ids: list[int]) -> int:
    """After the commit that finished ``ids``: queue the jobs waiting for them whose
    dependencies have all succeeded, cancel those with one that failed (cascading).
    Returns how many moved. Cheap when nothing waits for these jobs (one index probe).
    A failure is logged, not raised: the outcomes are already written, and the sweep
    resolves what this missed."""
    try:
        cur = await conn.execute(query(schema, "job_resolve_dependents"), {"ids": ids})
        row = await cur.fetchone()
    except psycopg.Error as exc:
        log.warning(
            "could not resolve the dependents of %d finished job(s) (the sweep will): %s",
            len(ids),
            first_line(exc),
        )
        return 0
    return int(row[0]) if row and row[0] else 0


class DependencySweep(Service):
    """Resolves waiting jobs that should have moved on (see the module docstring)."""

    name = "dependency sweep"

    def __init__(
        self, pool: AsyncConnectionPool, schema: str, interval: float = 10.0, limit: int = 1000
    ) -> None:
        self.pool = pool
        self.schema = schema
        self.interval = interval
        self.limit = limit
        self.moved = 0

    async def run_once(self) -> int:
        """One pass (0 if another worker holds the lock); how many jobs moved. Repeats
        while a full batch of stuck jobs came back. Each statement is its own autocommit
        transaction; a database error propagates to ``Service.run``, which logs it."""
        moved = 0
        async with self.pool.connection() as conn:
            while True:
                cur = await conn.execute(
                    query(self.schema, "job_dependencies_sweep"),
                    {"limit": self.limit, "key": f"{self.schema}.dependencies"},
                )
                row = await cur.fetchone()
                stuck, n = (int(row[0]), int(row[1])) if row else (0, 0)
                moved += n
                if stuck < self.limit or n == 0:
                    break
        if moved:
            log.warning(
                "dependency sweep: %d waiting job(s) moved on late (their dependencies had "
                "finished; a worker probably died before resolving them)",
                moved,
            )
        self.moved += moved
        return moved
