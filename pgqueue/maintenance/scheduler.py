"""The scheduler: enqueues the jobs of periodic tasks (``@app.periodic``), one per tick.

Every worker of an app with periodic tasks runs one, whatever queues the worker works:
the first worker to reach a tick enqueues its job, the others' compare-and-set finds
the tick taken (``periodic_advance`` in queries.sql), so there is exactly one job per
tick however many workers run, and a tick is handled as long as any worker runs.

A pass reads every schedule's row and the database's clock in one query, registers new
schedules, takes over a schedule the code changed, and enqueues what is due (see
``Periodic.plan`` for lateness and catch-up). Then it sleeps until the next tick is due,
at most ``max_sleep`` seconds. A pass that fails (database away, lock timeout) is logged
and tried again after ``interval`` seconds; no tick is lost by it, since ``last_tick``
did not move.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from ..periodic import MAX_TICKS_PER_PASS, Periodic, tick_key
from ..sql import query
from .service import Service

log = logging.getLogger("pgqueue.maintenance")

_WAKE_SLACK = 0.002  # wake just after the tick, not just before it
_RACE_PAUSE = 0.05  # another worker moved a schedule: read it again after this


class Scheduler(Service):
    name = "scheduler"

    def __init__(
        self,
        pool: AsyncConnectionPool,
        schema: str,
        schedules: Iterable[Periodic],
        interval: float = 1.0,
        max_sleep: float = 10.0,
        limit: int = MAX_TICKS_PER_PASS,
    ) -> None:
        self.pool = pool
        self.schema = schema
        self.schedules = {p.name: p for p in schedules}
        self.interval = interval
        self.max_sleep = max_sleep
        self.limit = limit
        self.enqueued = 0  # jobs this scheduler inserted
        self.lost_races = 0  # compare-and-sets another worker won

    async def run(self) -> None:
        """A pass at once, then one whenever the next tick is due; until cancelled."""
        while not self.stopped:
            try:
                delay = await self.run_once()
            except psycopg.Error as exc:
                self.report_failure(exc)
                delay = self.interval
            await asyncio.sleep(delay)

    async def run_once(self) -> float:
        """One pass over every schedule; returns the seconds until the next tick is due
        (at most ``max_sleep``). Raises ``psycopg.Error`` if the database fails."""
        if not self.schedules:
            return self.max_sleep
        wait = self.max_sleep
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                query(self.schema, "periodic_state"), {"names": list(self.schedules)}
            )
            for now, name, stored, last_tick in await cur.fetchall():
                periodic = self.schedules[name]
                text = periodic.schedule.text
                if last_tick is None or stored != text:
                    last_tick = await self._start(conn, periodic, now, stored)
                else:
                    last_tick = await self._advance(conn, periodic, now, last_tick)
                if last_tick is None:  # another worker moved it first: read it again
                    wait = min(wait, _RACE_PAUSE)
                    continue
                due = periodic.schedule.next_after(last_tick)
                wait = min(wait, (due - now).total_seconds() + _WAKE_SLACK)
        return max(wait, 0.0)

    async def _start(
        self, conn: Any, periodic: Periodic, now: datetime, stored: str | None
    ) -> datetime:
        """Register a new schedule, or store the code's schedule in place of the old one;
        either way its next job is for the first tick after now."""
        tick = periodic.schedule.last_at_or_before(now)
        params = {"name": periodic.name, "schedule": periodic.schedule.text, "tick": tick}
        if stored is None:
            cur = await conn.execute(query(self.schema, "periodic_register"), params)
            if cur.rowcount:
                log.info(
                    "periodic %s: registered (%s); first job at %s",
                    periodic.name,
                    params["schedule"],
                    periodic.schedule.next_after(tick).isoformat(),
                )
        else:
            cur = await conn.execute(
                query(self.schema, "periodic_reschedule"), {**params, "old_schedule": stored}
            )
            if cur.rowcount:
                log.warning(
                    "periodic %s: schedule changed from %r to %r; ticks between are skipped",
                    periodic.name,
                    stored,
                    params["schedule"],
                )
        return tick

    async def _advance(
        self, conn: Any, periodic: Periodic, now: datetime, last_tick: datetime
    ) -> datetime | None:
        """Enqueue what is due; returns the new last tick, or None if another worker
        moved it first (then nothing was written here)."""
        plan = periodic.plan(last_tick, now, self.limit)
        if plan is None:
            return last_tick
        job = periodic.job
        cur = await conn.execute(
            query(self.schema, "periodic_advance"),
            {
                "name": periodic.name,
                "schedule": periodic.schedule.text,
                "prev": last_tick,
                "tick": plan.advance_to,
                "ticks": plan.ticks,
                "keys": [tick_key(periodic.name, t) for t in plan.ticks],
                "queue": job["queue"],
                "task": job["task"],
                "args": job["args"],
                "kwargs": job["kwargs"],
                "priority": job["priority"],
                "max_attempts": job["max_attempts"],
            },
        )
        row = await cur.fetchone()
        if row is None or not row[0]:
            self.lost_races += 1
            return None
        ids = list(row[1] or [])
        self.enqueued += len(ids)
        if plan.skipped is not None:
            log.warning(
                "periodic %s: ticks from %s to %s are over %gs late (no worker ran); "
                "skipped them (catch_up=%s)%s",
                periodic.name,
                plan.skipped[0].isoformat(),
                plan.skipped[1].isoformat(),
                periodic.grace,
                periodic.catch_up,
                f", enqueued tick {plan.ticks[0].isoformat()} (job {ids[0]})" if ids else "",
            )
        for tick, job_id in zip(plan.ticks, ids, strict=False):
            log.debug(
                "periodic %s: tick %s enqueued as job %d",
                periodic.name,
                tick.isoformat(),
                job_id,
                extra={"job_id": job_id, "event": "periodic"},
            )
        return plan.advance_to
