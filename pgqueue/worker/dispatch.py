"""Running jobs and the prefetch buffer: claimed jobs wait here until a slot is free.

The claim loop fetches up to ``concurrency`` running plus ``prefetch`` buffered jobs,
so with a prefetch a slot that frees up is refilled from memory at once instead of
after a round trip. Buffered jobs are held like running ones (leases renewed, shown as
running), and a shutdown hands them back untouched. Prefetch is off by default: for
long jobs it would make a job wait behind a busy worker while another worker idles.
Per job the hot path is one asyncio task, no thread hop for ``async def`` handlers,
and a ``JobContext`` only for handlers that asked for one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from ..tasks import Task
from .completer import Completer
from .context import JobContext
from .heartbeat import Held
from .runner import Claimed, Outcome, failure, run_job

log = logging.getLogger("pgqueue.worker")


class Run:
    """One job being run: its asyncio task, its context (if any), whether it was lost or
    its cancellation asked for."""

    __slots__ = ("cancel", "ctx", "handler", "job", "lost", "stopping", "task")

    def __init__(self, job: Claimed, handler: Task | None, ctx: JobContext | None) -> None:
        self.job = job
        self.handler = handler
        self.ctx = ctx
        self.lost = False
        self.cancel = False
        self.stopping = False
        self.task: asyncio.Task[None] | None = None


class Dispatcher:
    """Starts buffered jobs as slots free up and hands outcomes to the completer."""

    def __init__(
        self,
        tasks: dict[str, Task],
        worker_id: str,
        concurrency: int,
        prefetch: int,
        held: Held,
        completer: Completer,
        executor: ThreadPoolExecutor,
        extend: Callable[[int, int, float], bool],
        on_slot: Callable[[], None],
    ) -> None:
        self.tasks = tasks
        self.worker_id = worker_id
        self.concurrency = concurrency
        self.prefetch = prefetch
        self.held = held
        self.completer = completer
        self.executor = executor
        self.extend = extend
        self.on_slot = on_slot
        self.running: dict[int, Run] = {}
        self.buffer: deque[Claimed] = deque()
        self.accepting = True

    def room(self) -> int:
        """How many more jobs to claim: ``concurrency`` running plus ``prefetch`` buffered."""
        return self.concurrency + self.prefetch - len(self.running) - len(self.buffer)

    def add(self, jobs: list[Claimed]) -> None:
        for job in jobs:
            old = self.running.get(job.id)
            if old is not None and old.job.attempt != job.attempt:
                # Our own earlier run of this job lost its lease (the reaper requeued it)
                # and we claimed it again: the old run is a stale one from now on.
                self._mark_lost(old)
        self.buffer.extend(jobs)
        self.fill()

    def fill(self) -> None:
        """Start buffered jobs while there are free slots."""
        while self.buffer and len(self.running) < self.concurrency and self.accepting:
            self._start(self.buffer.popleft())

    def _start(self, job: Claimed) -> None:
        handler = self.tasks.get(job.task)
        ctx = None
        if handler is not None and handler.pass_context:
            ctx = JobContext(
                job.id, job.task, job.attempt, job.queue, self.worker_id, _extend=self.extend
            )
        run = Run(job, handler, ctx)
        self.running[job.id] = run
        run.task = asyncio.create_task(self._execute(run))

    async def _execute(self, run: Run) -> None:
        job = run.job
        if log.isEnabledFor(logging.INFO):
            log.info(
                "job %d %s attempt %d started",
                job.id,
                job.task,
                job.attempt,
                extra={
                    "job_id": job.id,
                    "task": job.task,
                    "attempt": job.attempt,
                    "event": "started",
                },
            )
        outcome: Outcome | None = None
        started = time.monotonic()
        try:
            outcome = await run_job(job, run.handler, run.ctx, self.executor)
        except asyncio.CancelledError as exc:
            if not (run.lost or run.cancel or run.stopping):
                # Not ours: the handler's own code raised it (a cancelled inner task or
                # future). A failure like any other, not a shutdown.
                outcome = failure(job, run.handler, exc, started)
            elif not (run.lost or run.cancel):
                raise  # shutdown: the job is released, not completed
        except Exception as exc:  # run_job turns handler errors into outcomes; belt and braces
            outcome = failure(job, run.handler, exc, started)
        finally:
            if self.running.get(job.id) is run:
                del self.running[job.id]
            self.fill()
            self.on_slot()
        if run.lost or (outcome is None and not run.cancel):
            self.held.discard(job.id, job.attempt)
            log.warning(
                "job %d %s attempt %d: lease lost while running; result discarded",
                job.id,
                job.task,
                job.attempt,
                extra={"job_id": job.id, "task": job.task, "event": "lease_lost"},
            )
            return
        if run.cancel:  # asked to stop: it ends cancelled whatever the handler did
            outcome = Outcome(job, ok=False, cancelled=True)
        assert outcome is not None
        self.completer.put(outcome)

    def cancel(self, job_ids: list[int]) -> None:
        """Someone cancelled these jobs: stop the async ones, flag the sync ones (their
        ``ctx.cancelled``), and end buffered ones at once. Jobs not held here are ignored."""
        wanted = set(job_ids)
        for job in [j for j in self.buffer if j.id in wanted]:
            self.buffer.remove(job)
            self.completer.put(Outcome(job, ok=False, cancelled=True))
        for job_id in job_ids:
            run = self.running.get(job_id)
            if run is None or run.cancel:
                continue
            run.cancel = True
            log.info(
                "job %d: cancellation requested; stopping it",
                job_id,
                extra={"job_id": job_id, "event": "cancel_requested"},
            )
            if run.ctx is not None:
                run.ctx.cancelled.set()
            if run.handler is not None and run.handler.is_async and run.task is not None:
                run.task.cancel()

    def lost(self, jobs: list[tuple[int, int]]) -> None:
        """The heartbeat found these (id, attempt) leases gone: stop (async) or flag (sync)
        those runs. A run of another attempt of the same job is left alone."""
        lost = set(jobs)
        for job_id, attempt in jobs:
            self.held.discard(job_id, attempt)
        if any((j.id, j.attempt) in lost for j in self.buffer):
            self.buffer = deque(j for j in self.buffer if (j.id, j.attempt) not in lost)
        for job_id, attempt in jobs:
            run = self.running.get(job_id)
            if run is not None and run.job.attempt == attempt:
                self._mark_lost(run)

    def _mark_lost(self, run: Run) -> None:
        if run.lost:
            return
        run.lost = True
        if run.ctx is not None:
            run.ctx.lease_lost.set()
        log.warning(
            "job %d: lease lost on attempt %d (another worker may own it now); stopping it",
            run.job.id,
            run.job.attempt,
            extra={"job_id": run.job.id, "event": "lease_lost"},
        )
        if run.handler is not None and run.handler.is_async and run.task is not None:
            run.task.cancel()

    def stop_starting(self) -> None:
        """Shutdown: start nothing more; buffered jobs stay held and get released, and a
        cancellation of a running job from now on is the worker's own."""
        self.accepting = False
        self.buffer.clear()
        for run in self.running.values():
            run.stopping = True

    def tasks_running(self) -> list[asyncio.Task[None]]:
        return [r.task for r in self.running.values() if r.task is not None]
