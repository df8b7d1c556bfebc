"""Lease renewal from a thread, so no handler (busy, blocking, never yielding) starves it.

Every ``lease / 3`` seconds one fenced statement renews the leases of every job the
worker holds (running, or finished but not yet written back), and the worker's row in
the workers table is touched. Jobs missing from the answer were reclaimed: the worker is
told through ``on_lost`` and discards their results. A failed renewal (database down)
is logged and retried next beat; leases that expire meanwhile are reclaimed by the
reaper after the database is back, which is the at-least-once promise.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from ..db import application_name, first_line
from ..pools import Pool
from ..sql import query

log = logging.getLogger("pgqueue.worker")


class Held:
    """The jobs a worker holds: job id -> attempt (the fencing token). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[int, int] = {}

    def add_many(self, jobs: list[tuple[int, int]]) -> None:
        """Hold these (id, attempt) pairs, under one lock (a claim's batch)."""
        with self._lock:
            self._jobs.update(jobs)

    def discard_many(self, jobs: list[tuple[int, int]]) -> None:
        """``discard(id, attempt)`` for many pairs under one lock (a completion's batch)."""
        with self._lock:
            get, pop = self._jobs.get, self._jobs.pop
            for job_id, attempt in jobs:
                if get(job_id) == attempt:
                    pop(job_id, None)

    def discard(self, job_id: int, attempt: int | None = None) -> None:
        """Forget a job; with ``attempt``, only if that is the attempt held (a newer claim
        of the same job by this worker stays held)."""
        with self._lock:
            if attempt is None or self._jobs.get(job_id) == attempt:
                self._jobs.pop(job_id, None)

    def snapshot(self) -> dict[int, int]:
        with self._lock:
            return dict(self._jobs)

    def __len__(self) -> int:
        with self._lock:
            return len(self._jobs)


class Heartbeat(threading.Thread):
    """The renewal thread. ``stop()`` ends it after the current beat."""

    def __init__(
        self,
        dsn: str,
        schema: str,
        worker_row: dict[str, Any],
        lease: float,
        held: Held,
        on_lost: Callable[[list[tuple[int, int]]], None],
        on_cancel: Callable[[list[int]], None] | None = None,
    ) -> None:
        super().__init__(name="pgqueue-heartbeat", daemon=True)
        self.schema = schema
        self.worker_row = worker_row
        self.worker_id = str(worker_row["id"])
        self.lease = lease
        self.held = held
        self.on_lost = on_lost
        self.on_cancel = on_cancel
        self.interval = lease / 3
        self.renewed = 0  # leases renewed, lost, and failed beats: read by pgqueue.metrics
        self.lost = 0
        self.failures = 0
        self._stop_event = threading.Event()
        self.pool: ConnectionPool = Pool(
            dsn,
            min_size=1,
            max_size=4,
            kwargs={
                "autocommit": True,
                "application_name": application_name(dsn, "heartbeat", self.worker_id),
            },
            open=False,
            name="pgqueue-heartbeat",
            timeout=max(lease / 3, 1.0),
        )

    def run(self) -> None:
        self.pool.open(wait=False)
        while not self._stop_event.wait(self.interval):
            self.beat()
        self.pool.close()

    def beat(self) -> None:
        """One renewal; never raises (the next beat tries again)."""
        jobs = self.held.snapshot()
        try:
            with self.pool.connection() as conn:
                conn.execute(query(self.schema, "worker_heartbeat"), self.worker_row)
                if not jobs:
                    return
                rows = conn.execute(
                    query(self.schema, "job_heartbeat_fenced"),
                    {
                        "ids": list(jobs),
                        "attempts": list(jobs.values()),
                        "lease": self.lease,
                        "worker_id": self.worker_id,
                    },
                ).fetchall()
        except (psycopg.Error, Exception) as exc:  # keep beating whatever happens
            self.failures += 1
            log.warning("heartbeat failed, will retry in %.1fs: %s", self.interval, first_line(exc))
            return
        renewed = {int(r[0]) for r in rows}
        self.renewed += len(renewed)
        cancel = [int(r[0]) for r in rows if r[1]]
        if cancel and self.on_cancel is not None:
            self.on_cancel(cancel)  # the fallback when the NOTIFY was missed
        missing = {j: a for j, a in jobs.items() if j not in renewed}
        if missing:
            missing = self._really_lost(missing)
        still_held = self.held.snapshot()
        lost = [(j, a) for j, a in missing.items() if still_held.get(j) == a]
        if lost:
            self.lost += len(lost)
            self.on_lost(lost)

    def _really_lost(self, missing: dict[int, int]) -> dict[int, int]:
        """Of the jobs the renewal skipped or missed, those no longer ours (a row locked by
        someone else was skipped, not lost; its lease is renewed next beat)."""
        try:
            with self.pool.connection() as conn:
                rows = conn.execute(
                    query(self.schema, "job_held_check"),
                    {
                        "ids": list(missing),
                        "attempts": list(missing.values()),
                        "worker_id": self.worker_id,
                    },
                ).fetchall()
        except psycopg.Error as exc:
            log.warning("heartbeat check failed, will retry: %s", first_line(exc))
            return {}
        ours = {int(r[0]) for r in rows}
        return {j: a for j, a in missing.items() if j not in ours}

    def extend(self, job_id: int, attempt: int, seconds: float) -> bool:
        """Fenced lease extension for one job (called from handlers); False if lost.

        Raises the database's error if it cannot be reached.
        """
        with self.pool.connection() as conn:
            row: Any = conn.execute(
                query(self.schema, "job_extend_lease_fenced"),
                {
                    "id": job_id,
                    "attempt": attempt,
                    "seconds": seconds,
                    "worker_id": self.worker_id,
                },
            ).fetchone()
        return row is not None

    def stop(self) -> None:
        self._stop_event.set()
