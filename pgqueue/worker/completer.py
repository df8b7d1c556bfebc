"""Writes outcomes back, batched: all successes ready at once go in one fenced UPDATE.

Failures are written one by one (they carry a traceback and a retry decision); jobs of
tasks this worker's app does not know are handed back, without using an attempt, in one
statement (``job_release_unknown_fenced``). A write
that fails because the database is away is retried with backoff, keeping the jobs held
(their leases renewed) until it lands. A fenced write that changes no row means the
lease was lost: another worker owns the job, so this result is logged and thrown away.
The finishing statements tell result waiters on the done channel themselves; after they
commit, the jobs that finished are handed to ``job_resolve_dependents`` (in a statement
of its own) so that jobs waiting for them (``after=``) move on: successes only when the
completion saw a job waiting for one of them (``has_waiting``), failures and cancels
always (they are rare).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from ..db import first_line
from ..errors import MAX_SNOOZES
from ..hooks import CANCELLED, FAILED, LOST, RETRIED, SUCCEEDED, FinishedEvent, Hooks
from ..maintenance.dependencies import resolve_dependents
from ..pooler import execute as pooler_execute
from ..sql import query
from .heartbeat import Held
from .joblog import JobLog
from .runner import Outcome

log = logging.getLogger("pgqueue.worker")

MAX_BATCH = 1000
# A written state (None: the lease was lost) as the hooks name the attempt's end.
_EVENT = {None: LOST, "cancelled": CANCELLED, "queued": RETRIED, "failed": FAILED}
# A job of a task this worker does not know comes back after 0.5 s, then 1, 2, 4 ...
# (doubling with each claim that used no attempt), at most 30 s: a worker that knows it
# gets it soon, and workers that do not know it do not spin on it.
UNKNOWN_TASK_DELAY = 0.5
UNKNOWN_TASK_DELAY_CAP = 30.0


class Completer:
    """Collects outcomes (``put``) and writes them in the background (``run``)."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        schema: str,
        worker_id: str,
        held: Held,
        on_retry_scheduled: Callable[[], None],
        joblog: JobLog,
        hooks: Hooks | None = None,
        *,
        settings: dict[str, Any] | None = None,
    ) -> None:
        self.pool = pool
        self.settings = settings  # behind a pooler: sent with each write (pooler.execute)
        self.joblog = joblog
        self.hooks = hooks or Hooks()
        # How the attempts of the batch being written ended, for the hooks (pgqueue/hooks.py);
        # None when no hook listens (then nothing is collected).
        self._events: list[FinishedEvent] | None = None
        self.schema = schema
        self.worker_id = worker_id
        self.held = held
        self.on_retry_scheduled = on_retry_scheduled
        self._pending: list[Outcome] = []
        self._event = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.observe: Callable[[Outcome], None] | None = None
        self.succeeded = 0
        self.failed = 0
        self.retried = 0
        self.lost = 0

    def put(self, outcome: Outcome) -> None:
        if self.observe is not None:  # app.drain() collects what ran (pgqueue/drain.py)
            self.observe(outcome)
        self._pending.append(outcome)
        self._idle.clear()
        self._event.set()

    async def run(self) -> None:
        """Write batches until cancelled."""
        backoff = 0.1
        while True:
            await self._event.wait()
            self._event.clear()
            # At most MAX_BATCH per statement: a backlog of outcomes (after an outage)
            # goes out in slices that each commit quickly.
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            if self._pending:
                self._event.set()
            if not batch:
                self._idle.set()
                continue
            try:
                await self._write(batch)
                backoff = 0.1
            except psycopg.OperationalError as exc:
                log.warning(
                    "writing %d job results failed, retrying in %.1fs: %s",
                    len(batch),
                    backoff,
                    first_line(exc),
                )
                self._pending = [o for o in batch if not o.written] + self._pending
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                self._event.set()
                continue
            except psycopg.Error as exc:
                # Not the connection: something in the batch the database refuses. Write
                # the jobs one by one so one bad outcome cannot hold back the others.
                log.warning(
                    "a batch of %d results was refused (%s); writing them one by one",
                    len(batch),
                    first_line(exc),
                )
                await self._write_each([o for o in batch if not o.written])
            if not self._pending:
                self._idle.set()

    async def _write_each(self, batch: list[Outcome]) -> None:
        for o in batch:
            for attempt in range(2):
                try:
                    await self._write([o])
                    break
                except psycopg.OperationalError:
                    self._pending.append(o)  # the connection again: back to the normal path
                    self._event.set()
                    break
                except psycopg.Error as exc:
                    if attempt == 0:
                        log.warning(
                            "job %d: its outcome was refused (%s); storing it without "
                            "the result/traceback",
                            o.job.id,
                            first_line(exc),
                        )
                        o.result_json = "null"
                        o.error = {
                            "attempt": o.job.attempt,
                            "kind": (o.error or {}).get("kind", "error"),
                            "message": "the error could not be stored: " + first_line(exc),
                        }
                    else:
                        log.error(
                            "job %d: outcome could not be written (%s); the reaper will "
                            "retry the job when its lease expires",
                            o.job.id,
                            first_line(exc),
                        )
                        self.held.discard(o.job.id, o.job.attempt)

    async def drain(self, timeout: float) -> bool:
        """Wait until every outcome put so far is written; False on timeout."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def _write(self, batch: list[Outcome]) -> None:
        if not self.hooks.observing:
            await self._write_batch(batch)
            return
        events: list[FinishedEvent] = []
        self._events = events
        try:
            await self._write_batch(batch)
        finally:
            self._events = None
            if events:
                self.hooks.finish(events)

    async def _write_batch(self, batch: list[Outcome]) -> None:
        finished: list[int] = []
        if any(o.in_tx for o in batch):  # completed in the handler's transaction
            finished = self._done_in_transaction([o for o in batch if o.in_tx])
            batch = [o for o in batch if not o.in_tx]
        ok = [o for o in batch if o.ok]
        if len(ok) == len(batch):  # the common case: only successes
            bad: list[Outcome] = []
            cancelled: list[Outcome] = []
            released: list[Outcome] = []
        else:
            bad = [
                o for o in batch if not (o.ok or o.cancelled or o.release or o.snooze is not None)
            ]
            cancelled = [o for o in batch if o.cancelled]
            released = [o for o in batch if o.release]
            for o in batch:
                if o.snooze is not None:
                    finished.extend(await self._snooze(o))
        async with self.pool.connection() as conn:
            if ok:
                # {"id": [attempt, result], ...}: see job_complete_fenced
                records = ",".join(f'"{o.job.id}":[{o.job.attempt},{o.result_json}]' for o in ok)
                cur = await self._execute(
                    conn,
                    query(self.schema, "job_complete_fenced"),
                    {
                        "done": "{" + records + "}",
                        "ids": [o.job.id for o in ok],
                        "worker_id": self.worker_id,
                    },
                )
                rows = await cur.fetchall()
                done = {int(r[0]) for r in rows}
                if any(r[1] for r in rows):  # someone waits for these (after=)
                    finished.extend(done)
                self.held.discard_many([(o.job.id, o.job.attempt) for o in ok])
                lines = self.joblog.enabled()
                for o in ok:
                    o.written = True
                    if o.job.id not in done:
                        self._finish_log(o, None)
                    elif lines:
                        self.joblog.succeeded(o.job, o.duration)
                if self._events is not None:
                    self._events.extend((o, SUCCEEDED) for o in ok if o.job.id in done)
                self.succeeded += len(done)
            for o in cancelled:
                cur = await self._execute(
                    conn,
                    query(self.schema, "job_cancel_fenced"),
                    {
                        "id": o.job.id,
                        "attempt": o.job.attempt,
                        "worker_id": self.worker_id,
                        "message": o.message or "cancelled on request while running",
                    },
                )
                row = await cur.fetchone()
                o.written = True
                self.held.discard(o.job.id, o.job.attempt)
                if row:
                    finished.append(o.job.id)
                self._finish_log(o, "cancelled" if row else None)
            if released:
                finished.extend(await self._release(conn, released))
            for o in bad:
                row = await (
                    await self._execute(
                        conn,
                        query(self.schema, "job_fail_fenced"),
                        {
                            "id": o.job.id,
                            "attempt": o.job.attempt,
                            "worker_id": self.worker_id,
                            "final": o.final,
                            "backoff": o.backoff,
                            "error": json.dumps({**(o.error or {}), "worker": self.worker_id}),
                        },
                    )
                ).fetchone()
                state = None if row is None else str(row[0])
                o.written = True
                self.held.discard(o.job.id, o.job.attempt)
                if state == "queued":
                    self.retried += 1
                    self.on_retry_scheduled()
                elif state == "failed":
                    self.failed += 1
                    finished.append(o.job.id)
                self._finish_log(o, state)
            if finished:
                await resolve_dependents(conn, self.schema, finished)

    def _done_in_transaction(self, batch: list[Outcome]) -> list[int]:
        """Outcomes the handler's own transaction already wrote (ctx.transaction()):
        count and log them; the ids of those a waiting job depends on."""
        lines = self.joblog.enabled()
        waiting = []
        for o in batch:
            o.written = True
            self.held.discard(o.job.id, o.job.attempt)
            if not o.committed:
                self._finish_log(o, None)  # the fenced completion matched nothing
                continue
            self.succeeded += 1
            if lines:
                self.joblog.succeeded(o.job, o.duration)
            if self._events is not None:
                self._events.append((o, SUCCEEDED))
            if o.has_waiting:
                waiting.append(o.job.id)
        return waiting

    async def _execute(self, conn: Any, sql: str, params: Any) -> Any:
        return await pooler_execute(conn, sql, params, settings=self.settings)

    async def _snooze(self, o: Outcome) -> list[int]:
        """Write a Snooze (``job_snooze_fenced``, no attempt used); the job's id if it
        ended instead (snoozed too often: failed; cancellation asked: cancelled)."""
        async with self.pool.connection() as conn:
            cur = await self._execute(
                conn,
                query(self.schema, "job_snooze_fenced"),
                {
                    "id": o.job.id,
                    "attempt": o.job.attempt,
                    "worker_id": self.worker_id,
                    "seconds": o.snooze,
                    "max_snoozes": MAX_SNOOZES,
                },
            )
            row = await cur.fetchone()
        o.written = True
        self.held.discard(o.job.id, o.job.attempt)
        state = None if row is None else str(row[0])
        self.joblog.flush()
        j = o.job
        extra = {"job_id": j.id, "task": j.task, "attempt": j.attempt, "event": "snoozed"}
        if state == "queued":
            log.info("job %d %s attempt %d snoozed for %.1fs (no attempt used)",
                     j.id, j.task, j.attempt, o.snooze or 0.0, extra=extra)  # fmt: skip
            self.on_retry_scheduled()
            return []
        if state == "failed":
            self.failed += 1
            log.warning("job %d %s: snoozed too often (%d claims used no attempt); failed",
                        j.id, j.task, MAX_SNOOZES, extra=extra)  # fmt: skip
        elif state is None:
            self._finish_log(o, None)
        return [] if state is None else [j.id]

    async def _release(self, conn: Any, released: list[Outcome]) -> list[int]:
        """Hand back jobs of tasks this worker's app does not know (a rolling deploy),
        fenced, without using an attempt (see ``job_release_unknown_fenced``). Returns
        the ids of those that ended cancelled instead (their cancellation was asked)."""
        cur = await self._execute(
            conn,
            query(self.schema, "job_release_unknown_fenced"),
            {
                "ids": [o.job.id for o in released],
                "attempts": [o.job.attempt for o in released],
                "worker_id": self.worker_id,
                "base": UNKNOWN_TASK_DELAY,
                "cap": UNKNOWN_TASK_DELAY_CAP,
            },
        )
        states = {int(r[0]): str(r[2]) for r in await cur.fetchall()}
        self.held.discard_many([(o.job.id, o.job.attempt) for o in released])
        for o in released:
            o.written = True
            j = o.job
            state = states.get(j.id)
            if state == "queued":
                log.info(
                    "job %d: task %r is not registered on this worker's app; handed back "
                    "for a worker that knows it (no attempt used)",
                    j.id,
                    j.task,
                    extra={"job_id": j.id, "task": j.task, "event": "unknown_task_released"},
                )
            else:  # cancelled on request meanwhile, or the lease was lost (None)
                self._finish_log(o, state)
        if "queued" in states.values():
            self.on_retry_scheduled()  # due again soon: the claim loop's timer must know
        return [job_id for job_id, state in states.items() if state == "cancelled"]

    def _finish_log(self, o: Outcome, state: str | None) -> None:
        """Log how a job ended, other than a success (those go through the JobLog),
        after the per-job lines still pending there."""
        self.joblog.flush()
        if self._events is not None and state in _EVENT:
            self._events.append((o, _EVENT[state]))
        j = o.job
        extra: dict[str, Any] = {
            "job_id": j.id,
            "task": j.task,
            "attempt": j.attempt,
            "duration_ms": round(o.duration * 1000, 3),
        }
        if j.trace is not None:  # traced (pgqueue.otel): the run's span
            extra["trace_id"], extra["span_id"] = j.trace
        if state is None:
            self.lost += 1
            extra["event"] = "lease_lost"
            log.warning(
                "job %d %s attempt %d: lease lost before the result was written; "
                "result discarded (another worker owns the job)",
                j.id,
                j.task,
                j.attempt,
                extra=extra,
            )
        elif state == "cancelled":
            extra["event"] = "cancelled"
            log.warning(
                "job %d %s attempt %d cancelled on request", j.id, j.task, j.attempt, extra=extra
            )
        else:
            extra["event"] = "retry" if state == "queued" else "failed"
            message = (o.error or {}).get("message", "")
            what = "will retry" if state == "queued" else "failed for good (dead letter)"
            log.warning(
                "job %d %s attempt %d %s: %s", j.id, j.task, j.attempt, what, message, extra=extra
            )
