"""Running jobs and the prefetch buffer: claimed jobs wait here until a lane takes them.

The claim loop fetches up to ``concurrency`` running plus ``prefetch`` buffered jobs,
so with a prefetch a slot that frees up is refilled from memory at once instead of
after a round trip. Buffered jobs are held like running ones (leases renewed, shown as
running), and a shutdown hands them back untouched. Prefetch is off by default: for
long jobs it would make a job wait behind a busy worker while another worker idles.

Jobs run on lanes: at most ``concurrency`` long-lived asyncio tasks, each taking
buffered jobs one after another and awaiting the handler itself. A handler that
finishes without waiting for anything (a quick ``async def``) costs no task and no
event-loop round of its own: the lane goes straight on to the next job (and yields to
the loop every ``SYNC_BURST`` jobs so claims and completions keep flowing). When a
handler does wait (I/O, a thread for a ``def`` handler), its lane hands the next
buffered job to another lane, waking an idle one or starting a new one, so up to
``concurrency`` jobs wait at once, as with a task per job. Measured on prefilled
drains of 20,000 no-op jobs (c=100, prefetch 500, five interleaved pairs): 46.5k ->
51.3k jobs/s (median) against a task per job, faster in every pair.

What a handler sees: each job runs in its own copy of the context, so a ``ContextVar``
a handler sets does not leak into the next job. ``asyncio.current_task()`` is its lane,
as a sync handler's thread is a pool thread: jobs that run one after another on a lane
share it (Procrastinate's sub-workers do the same). The worker cancels the lane to stop
a job (lost lease, cancel request, shutdown) and un-cancels it after that job, so
``asyncio.timeout`` in the next job works; a lane the handler cancelled itself is
retired and a fresh one takes over. Per-job state belongs in a ``ContextVar`` or the
``JobContext`` (built only for handlers that ask), not in a dict keyed by
``current_task()``, and a handler must not keep its task to cancel it later.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine, Generator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..hooks import LOST, Hooks
from ..limits import DEFAULT_LIMITS, Limits
from ..tasks import Task
from .completer import Completer
from .context import JobContext
from .heartbeat import Heartbeat, Held
from .joblog import JobLog
from .runner import Claimed, Outcome, failure, run_job
from .transaction import TransactionSource

log = logging.getLogger("pgqueue.worker")

#: Jobs a lane runs back to back without waiting before it lets the loop run once.
SYNC_BURST = 64


class _Step:
    """Awaiting it runs ``coro`` step by step inside ``context`` (the job's own copy)
    and calls ``on_wait`` the first time ``coro`` waits for something."""

    __slots__ = ("context", "coro", "on_wait")

    def __init__(
        self,
        coro: Coroutine[Any, Any, None],
        context: contextvars.Context,
        on_wait: Callable[[], None],
    ) -> None:
        self.coro = coro
        self.context = context
        self.on_wait = on_wait

    def __await__(self) -> Generator[Any, Any, None]:
        run, coro = self.context.run, self.coro
        try:
            pending = run(coro.send, None)
            self.on_wait()
            while True:
                thrown: BaseException | None = None
                try:
                    value = yield pending  # the future coro waits on, up to the lane's task
                except GeneratorExit:
                    coro.close()
                    raise
                except BaseException as exc:  # thrown into the lane (a cancel): pass it on
                    thrown = exc
                if thrown is None:
                    pending = run(coro.send, value)
                else:  # outside the except block: the job's own errors get no false context
                    pending, thrown = run(coro.throw, thrown), None
        except StopIteration:
            return


class Run:
    """One job being run: the lane (asyncio task) running it, its context (if any),
    whether it was lost or its cancellation asked for."""

    __slots__ = ("cancel", "cancels", "ctx", "handler", "job", "lost", "stopping", "task")

    def __init__(
        self,
        job: Claimed,
        handler: Task | None,
        ctx: JobContext | None,
        task: asyncio.Task[None] | None,
    ) -> None:
        self.job = job
        self.handler = handler
        self.ctx = ctx
        self.lost = False
        self.cancel = False
        self.stopping = False
        self.task = task  # the lane running it
        self.cancels = 0  # times its lane was cancelled to stop it (un-cancelled after)

    def stop(self) -> None:
        """Cancel the lane, which is inside this job's handler (an async one)."""
        if self.handler is not None and self.handler.is_async and self.task is not None:
            self.task.cancel()
            self.cancels += 1


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
        joblog: JobLog,
        hooks: Hooks | None = None,
        heartbeat: Heartbeat | None = None,
        limits: Limits = DEFAULT_LIMITS,
        transactions: TransactionSource | None = None,
    ) -> None:
        self.tasks = tasks
        self.transactions = transactions  # ctx.transaction()
        self.skip_tasks: list[str] = []  # tasks handed back as unknown (the worker's list)
        self.heartbeat = heartbeat  # progress and fenced calls (checkpoint) of handlers
        self.limits = limits
        self.joblog = joblog
        self.hooks = hooks or Hooks()
        # around_run hooks are passed to run_job only when there are any (none: no wrapper)
        self._around = self.hooks if self.hooks.run else None
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
        self.lanes: set[asyncio.Task[None]] = set()
        self._idle: deque[asyncio.Future[None]] = deque()  # wake-ups of idle lanes

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
        """Get buffered jobs started: wake an idle lane, or start one if fewer than
        ``concurrency`` exist. (Busy lanes take buffered jobs when theirs ends.)"""
        if not (self.buffer and self.accepting):
            return
        while self._idle:
            wake = self._idle.popleft()
            if not wake.done():
                wake.set_result(None)
                return
        if len(self.lanes) < self.concurrency:
            lane = asyncio.create_task(self._lane(), name="pgqueue-lane")
            self.lanes.add(lane)

    async def _lane(self) -> None:
        lane = asyncio.current_task()
        assert lane is not None
        loop = asyncio.get_running_loop()
        burst = 0
        try:
            while self.accepting:
                if not self.buffer:
                    burst = 0
                    wake: asyncio.Future[None] = loop.create_future()
                    self._idle.append(wake)
                    await wake
                    continue
                job = self.buffer.popleft()
                handler = self.tasks.get(job.task)
                if handler is None:
                    # Not a task of this app (an old worker in a rolling deploy): handed
                    # back for a worker that knows it, without using an attempt; the
                    # worker's claims skip the task from now on (job_claim_batch).
                    self.completer.put(Outcome(job, ok=False, release=True))
                    if job.task not in self.skip_tasks:
                        self.skip_tasks.append(job.task)
                    self.on_slot()
                    continue
                ctx = None
                if handler.pass_context:
                    ctx = JobContext(
                        job.id,
                        job.task,
                        job.attempt,
                        job.queue,
                        self.worker_id,
                        _extend=self.extend,
                        checkpoint_state=job.checkpoint,
                        _progress=self.heartbeat.progress if self.heartbeat else None,
                        _call=self.heartbeat.call if self.heartbeat else None,
                        _limits=self.limits,
                        _transactions=self.transactions,
                    )
                run = Run(job, handler, ctx, lane)
                self.running[job.id] = run
                try:
                    await _Step(self._execute(run), contextvars.copy_context(), self.fill)
                finally:
                    for _ in range(run.cancels):  # the job is over: so is our cancel
                        lane.uncancel()
                if lane.cancelling():
                    # A cancel of the lane that was not ours: the handler cancelled its
                    # current_task() itself. It would hit the next job; a fresh lane takes
                    # over instead (see the finally).
                    return
                burst += 1
                if burst >= SYNC_BURST:
                    burst = 0
                    await asyncio.sleep(0)
        finally:
            self.lanes.discard(lane)
            self.fill()  # a lane that ends early leaves buffered jobs to another

    async def _execute(self, run: Run) -> None:
        job = run.job
        if self.joblog.enabled():
            self.joblog.started(job)
        outcome: Outcome | None = None
        started = time.monotonic()
        try:
            outcome = await run_job(job, run.handler, run.ctx, self.executor, self._around)
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
            if run.ctx is not None and run.ctx._tx is not None and run.ctx._tx.open:
                # cancelled, lost or shut down with its transaction open: it all rolls back
                await asyncio.shield(run.ctx._tx.rollback())
            if self.running.get(job.id) is run:
                del self.running[job.id]
            self.on_slot()
        if run.lost or (outcome is None and not run.cancel):
            self.held.discard(job.id, job.attempt)
            self.joblog.flush()
            log.warning(
                "job %d %s attempt %d: lease lost while running; result discarded",
                job.id,
                job.task,
                job.attempt,
                extra={"job_id": job.id, "task": job.task, "event": "lease_lost"},
            )
            if self.hooks.observing:
                lost = Outcome(job, ok=False, duration=time.monotonic() - started)
                self.hooks.finish([(lost, LOST)])
            return
        if run.cancel and not (outcome is not None and outcome.in_tx):
            # asked to stop: it ends cancelled whatever the handler did (unless its own
            # transaction has already ended it)
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
            self.joblog.flush()
            log.info(
                "job %d: cancellation requested; stopping it",
                job_id,
                extra={"job_id": job_id, "event": "cancel_requested"},
            )
            if run.ctx is not None:
                run.ctx.cancelled.set()
            run.stop()

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
        self.joblog.flush()
        log.warning(
            "job %d: lease lost on attempt %d (another worker may own it now); stopping it",
            run.job.id,
            run.job.attempt,
            extra={"job_id": run.job.id, "event": "lease_lost"},
        )
        run.stop()

    def stop_starting(self) -> None:
        """Shutdown: start nothing more; buffered jobs stay held and get released, and a
        cancellation of a running job from now on is the worker's own."""
        self.accepting = False
        self.buffer.clear()
        for run in self.running.values():
            run.stopping = True
        while self._idle:  # idle lanes end; busy ones end after their job
            wake = self._idle.popleft()
            if not wake.done():
                wake.set_result(None)

    def tasks_running(self) -> list[asyncio.Task[None]]:
        """The lanes running a job now (each runs one at a time)."""
        return list({r.task for r in self.running.values() if r.task is not None})
