"""The vacuumer: keeps the job tables' dead rows bounded when autovacuum does not.

A queue table turns over every row it holds, so dead rows pile up fast; autovacuum
normally clears them (0001 and 0004 tune it for these tables). ``jobs`` gets dead rows
from every claim and completion, ``succeeded_jobs`` from the pruner; without a vacuum
neither reuses the space, and the history table grows by what is pruned. Some servers
run with autovacuum off, or it falls behind; then this service, every ``interval`` in
one worker at a time (a session advisory lock), runs ``VACUUM (ANALYZE, SKIP_LOCKED)`` on
each table whose dead rows pass ``min_dead`` and ``dead_fraction`` of its live ones.
Behind a transaction pooler a session lock would stay on a server connection someone
else gets next (``session_lock=False``): there SKIP_LOCKED alone keeps two workers from
vacuuming one table at once (the second skips it).

VACUUM needs the tables' owner (PostgreSQL 17+: the MAINTAIN privilege). A worker that
runs as a least-privilege role (``pgqueue grant worker``) has neither, and a VACUUM
without the right only warns and skips the table: so the first pass asks, and without
the right the vacuumer says so once (INFO; WARNING if autovacuum is off) and stops.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from ..db import first_line
from ..sql import query
from .service import Service

log = logging.getLogger("pgqueue.maintenance")

# The statement that vacuums each table jobs_vacuum_due reports on.
VACUUM_QUERY = {"jobs": "jobs_vacuum", "succeeded_jobs": "succeeded_jobs_vacuum"}


class Vacuumer(Service):
    name = "vacuum"

    def __init__(
        self,
        pool: AsyncConnectionPool,
        schema: str,
        interval: float = 30.0,
        min_dead: int = 20_000,
        dead_fraction: float = 0.2,
        stale_after: float = 120.0,
        session_lock: bool = True,
    ) -> None:
        self.pool = pool
        self.schema = schema
        self.interval = interval
        self.params = {
            "min_dead": min_dead,
            "dead_fraction": dead_fraction,
            "stale_after": stale_after,
            "key": f"{schema}.vacuum",
        }
        self.session_lock = session_lock
        self.vacuums = 0
        self.allowed: bool | None = None  # may this role VACUUM the tables (first pass)

    async def _may_vacuum(self, conn: psycopg.AsyncConnection[Any]) -> bool:
        cur = await conn.execute(query(self.schema, "jobs_vacuum_allowed"))
        row = await cur.fetchone()
        if row is not None and row[0]:
            return True
        autovacuum = bool(row and row[1])
        log.log(
            logging.INFO if autovacuum else logging.WARNING,
            "vacuumer off: role %s may not VACUUM %s.jobs and %s.succeeded_jobs (only their "
            "owner may, or on PostgreSQL 17+ a role granted MAINTAIN); %s",
            conn.info.user,
            self.schema,
            self.schema,
            "autovacuum keeps them"
            if autovacuum
            else "autovacuum is off too, so their dead rows pile up: turn it on, or run a "
            "worker as the owner",
        )
        return False

    def report_failure(self, exc: psycopg.Error) -> None:
        if isinstance(exc, psycopg.errors.InsufficientPrivilege):
            self.stopped = True
            log.warning(
                "cannot vacuum the job tables of %s (%s); leaving it to autovacuum",
                self.schema,
                first_line(exc),
            )
        else:
            super().report_failure(exc)

    async def run_once(self) -> bool:
        """One pass; True if it vacuumed a table."""
        async with self.pool.connection() as conn:
            if self.allowed is None:
                self.allowed = await self._may_vacuum(conn)
            if not self.allowed:
                self.stopped = True
                return False
            cur = await conn.execute(query(self.schema, "jobs_vacuum_due"), self.params)
            due = [r for r in await cur.fetchall() if r[1]]
            if not due:
                return False
            if self.session_lock:
                cur = await conn.execute(query(self.schema, "jobs_vacuum_lock"), self.params)
                locked = await cur.fetchone()
                if not locked or not locked[0]:
                    return False  # another worker is at it
            try:
                for table, _, dead, live in due:
                    log.info(
                        "vacuuming %s.%s: %d dead rows, %d live", self.schema, table, dead, live
                    )
                    await conn.execute(query(self.schema, VACUUM_QUERY[table]))
                    self.vacuums += 1
            finally:
                if self.session_lock:
                    await conn.execute(query(self.schema, "jobs_vacuum_unlock"), self.params)
        return True
