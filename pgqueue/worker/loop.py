"""The worker: claim -> dispatch -> complete, woken by NOTIFY, a timer or the poll interval.

One asyncio loop per process. It claims up to its free slots at a time with
``job_claim_batch`` (SKIP LOCKED), runs each job (``runner``), hands outcomes to the
``Completer`` (batched fenced writes) and keeps leases alive from the ``Heartbeat``
sidecar process (heartbeat.py). Database errors never stop it: it logs, backs off and
tries again; the pools re-open broken connections, so it rides out a PostgreSQL restart
on its own.

Shutdown (``request_stop``, SIGTERM, SIGINT): stop claiming, let running jobs finish for
up to ``shutdown_timeout``, then hand the rest back to ``queued`` at once without using
an attempt. A second SIGINT (or ``request_stop(immediate=True)``) skips the wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from ..app import App
from ..db import first_line
from ..listener import Listener
from ..maintenance import Pruner, Reaper, Scheduler, Vacuumer
from ..maintenance.aging import Ager
from ..maintenance.unknown_tasks import UnknownTasks
from ..pooler import NO_LISTEN_POLL_INTERVAL
from ..pooler import execute as pooler_execute
from ..sql import plain
from .completer import Completer
from .config import WorkerConfig
from .decode import decode_rows, fail_undecodable
from .dispatch import Dispatcher
from .heartbeat import Heartbeat, Held
from .runner import Claimed, Outcome
from .services import GENERIC_PLANS as GENERIC_PLANS  # (it was defined here)
from .services import build_maintenance, build_parts, open_pools, start_services
from .shutdown import shut_down

log = logging.getLogger("pgqueue.worker")

# While the fast path fills every batch, the flow claim still goes first this often.
FLOW_RECHECK = 1.0
# First pause when a due job could not be claimed (row-locked elsewhere); doubles up to the
# poll interval.
_DUE_BACKOFF_START = 0.01


class Worker:
    """Works jobs of ``app``'s tasks from ``config.queues`` until stopped."""

    # Set by ``run`` (the pools, the heartbeat) and ``services.py`` (the rest).
    pool: AsyncConnectionPool
    claim_pool: AsyncConnectionPool
    heartbeat: Heartbeat
    vacuumer: Vacuumer
    ager: Ager
    scheduler: Scheduler
    unknown_tasks: UnknownTasks

    def __init__(self, app: App, config: WorkerConfig | None = None) -> None:
        self.app = app
        self.config = config or WorkerConfig()
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.held = Held()
        self.dispatcher: Dispatcher | None = None
        self._stopping = False
        self._immediate = False
        self._stop_event: asyncio.Event | None = None
        self._wake: asyncio.Event | None = None
        self._slot: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.claimed = 0
        # The flow claim (limited queues, grouped jobs) is skipped while the last one found
        # no limited queue and nothing to take; a due job the fast path could not take, or
        # FLOW_RECHECK seconds, bring it back (see _claim_loop).
        self._flow_idle = False
        self._flow_busy = False
        self._flow_at = 0.0
        self._alternate = False
        self._fast_busy = False
        self.listener: Listener | None = None
        self.pooler = False  # behind a transaction pooler (set by run; see pooler.py)
        # Tasks this worker handed back as unknown to its app (a rolling deploy): its
        # fast-path claims skip them from then on (see job_claim_batch).
        self.skip_tasks: list[str] = []
        self.local_settings: dict[str, Any] | None = None
        self.completer: Completer | None = None
        self.reaper: Reaper | None = None
        self.pruner: Pruner | None = None
        self.metrics: Any = None  # the /metrics server when config.metrics_port is set
        #: Called with each job's outcome as it is handed to the completer (app.drain()).
        self.on_outcome: Callable[[Outcome], None] | None = None

    # -- control -------------------------------------------------------------------------
    def request_stop(self, immediate: bool = False) -> None:
        """Stop claiming and shut down (thread-safe). ``immediate`` skips the wait."""
        if self._loop is None:
            self._stopping = True
            self._immediate = self._immediate or immediate
            return
        self._loop.call_soon_threadsafe(self._set_stop, immediate)

    def _set_stop(self, immediate: bool) -> None:
        if self._stopping and not immediate:
            immediate = True  # the second request means "now"
        self._stopping = True
        self._immediate = self._immediate or immediate
        for event in (self._stop_event, self._wake, self._slot):
            if event is not None:
                event.set()

    def _wake_up(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT stop gracefully; a SIGINT after that stops at once.

        A repeated SIGTERM changes nothing: systemd signals every process of a unit and
        a supervisor forwards its own signal too, so one ``stop`` can arrive twice.
        """
        assert self._loop is not None
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        if not self._stopping:
            log.info(
                "%s: no new claims; waiting up to %.0fs for %d running job(s)",
                sig.name,
                self.config.shutdown_timeout,
                len(self.dispatcher.running) if self.dispatcher else 0,
            )
            self._set_stop(immediate=False)
        elif sig == signal.SIGINT:
            log.warning("second SIGINT: handing running jobs back now")
            self._set_stop(immediate=True)
        else:
            log.info("%s again: still waiting for running jobs (a SIGINT stops now)", sig.name)

    # -- main ----------------------------------------------------------------------------
    async def run(self, *, handle_signals: bool = False) -> None:
        """Run until stopped. Raises ``ConfigurationError``/``SchemaNotMigrated`` at start
        if the database or schema is not usable; later database errors are ridden out."""
        self._loop = asyncio.get_running_loop()
        self._stop_event, self._wake, self._slot = asyncio.Event(), asyncio.Event(), asyncio.Event()
        if self._stopping:
            self._stop_event.set()
        dsn = await asyncio.to_thread(self.app._probe)
        cfg = self.config
        if cfg.metrics_port is not None:  # Prometheus /metrics (pgqueue/metrics/worker.py)
            from ..metrics.worker import serve_worker_metrics

            # first: a port in use fails the start before anything else is opened
            self.metrics = serve_worker_metrics(self, cfg.metrics_port, cfg.metrics_host)
        pools = await open_pools(dsn, cfg, self.id)
        pool, claim_pool = pools.shared, pools.claim
        self.pool = pool
        self.claim_pool = claim_pool
        self.pooler = pools.pooler
        self.local_settings = pools.settings
        executor = ThreadPoolExecutor(max_workers=cfg.concurrency, thread_name_prefix="pgqueue-job")
        row = {
            "id": self.id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "queues": cfg.queues,
            "concurrency": cfg.concurrency,
            "tasks": sorted(self.app.tasks),  # jobs of other tasks are handed back
        }
        heartbeat, joblog, transactions = build_parts(self, dsn, pools, executor, row)
        hooks = self.app.hooks
        build_maintenance(self, pool, pools.pooler)
        async with pool.connection() as conn:
            await conn.execute(self.app.query("worker_heartbeat"), row)  # registers
        heartbeat.start()
        background = start_services(self, pool, dsn)
        if handle_signals:
            self.install_signal_handlers()
        log.info(
            "worker %s started: queues=%s concurrency=%d lease=%.0fs listen=%s",
            self.id,
            ",".join(cfg.queues),
            cfg.concurrency,
            cfg.lease,
            cfg.listen,
        )
        try:
            assert self.dispatcher is not None  # (build_parts made it)
            await self._claim_loop(self.dispatcher)
        finally:
            try:
                await shut_down(self, background, heartbeat)  # see shutdown.py
            finally:
                # Even if the shutdown itself is cancelled (a host app's second cancel):
                # no heartbeat may outlive the worker, or its jobs' leases never expire.
                heartbeat.stop()
                executor.shutdown(wait=False, cancel_futures=True)
                await pool.close()
                await claim_pool.close()
                await transactions.close()
                joblog.close()
                hooks.close()
                if self.metrics is not None:
                    self.metrics.close()

    async def _claim_loop(self, dispatcher: Dispatcher) -> None:
        assert self._wake is not None and self._slot is not None
        cfg = self.config
        batch_cap = cfg.claim_batch or (cfg.concurrency + cfg.prefetch)
        # With jobs still buffered, wait until a worthwhile batch fits: fewer, larger
        # claims (each one is a commit) while slots are refilled from the buffer.
        min_claim = max(1, min(batch_cap, cfg.prefetch // 2, cfg.concurrency // 2))
        backoff = 0.1
        due_backoff = _DUE_BACKOFF_START
        while not self._stopping:
            room = dispatcher.room()
            if room <= 0 or (dispatcher.buffer and room < min_claim):
                self._slot.clear()
                await self._slot.wait()
                continue
            want = min(room, batch_cap)
            self._wake.clear()
            try:
                # Which claim goes first: the flow claim on every other round while it is
                # finding work (grouped or limited jobs share the worker with ungrouped
                # ones instead of waiting for them), and once every FLOW_RECHECK seconds
                # while the fast path fills whole batches; otherwise the fast path, and the
                # flow claim only for what it left over.
                self._alternate = not self._alternate
                flow_first = (self._flow_busy and self._alternate) or (
                    self._fast_busy and time.monotonic() - self._flow_at > FLOW_RECHECK
                )
                jobs = await self._claim(want, flow=flow_first)
                claimed, ran_flow = len(jobs), flow_first
                if not flow_first:
                    self._fast_busy = claimed == want
                if claimed < want and (flow_first or not self._flow_idle):
                    dispatcher.add(jobs)  # their handlers start before the next claim
                    await asyncio.sleep(0)
                    jobs = await self._claim(want - claimed, flow=not flow_first)
                    claimed, ran_flow = claimed + len(jobs), True
                backoff = 0.1
            except psycopg.Error as exc:
                log.warning("claim failed, retrying in %.1fs: %s", backoff, first_line(exc))
                await self._sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if self._stopping:
                break  # claimed jobs stay held and are handed back by the shutdown
            dispatcher.add(jobs)
            if claimed:
                due_backoff = _DUE_BACKOFF_START
                await asyncio.sleep(0)  # handlers start before this loop's next query
            if claimed == want:
                continue  # there may be more; claim again as soon as a slot allows
            if cfg.burst:
                if await self._burst_done(dispatcher):
                    log.info("burst: nothing is due any more; stopping")
                    self._set_stop(False)
                    break
                self._flow_idle = False  # a due job may be one only the flow claim takes
                await self._sleep(0.05, wake=self._wake)  # jobs still run: look again soon
                continue
            timeout = await self._idle_timeout()
            if timeout <= 0 and self._flow_idle and not ran_flow:
                self._flow_idle = False  # a due job the fast path cannot take: flow claim
                continue
            if timeout <= 0:
                # A job is due, yet the claim did not return it: another transaction holds
                # its row lock (SKIP LOCKED passed it over). Back off instead of spinning.
                timeout, due_backoff = due_backoff, min(due_backoff * 2, self.poll_interval)
            else:
                due_backoff = _DUE_BACKOFF_START
            await self._sleep(timeout, wake=self._wake)

    async def _claim(self, limit: int, *, flow: bool = False) -> list[Claimed]:
        """Claim up to ``limit`` jobs: the fast path (ungrouped jobs of queues without
        limits), or with ``flow`` what it leaves (limited queues, grouped jobs)."""
        params = {
            "queues": self.config.queues,
            "limit": limit,
            "worker_id": self.id,
            "lease": self.config.lease,
            "skip_tasks": self.skip_tasks,
        }
        async with self.claim_pool.connection() as conn:
            if flow:
                # One transaction, one round trip (pipeline): lock the limited queues' rows,
                # then claim in a fresh snapshot (see queue_lock_limited for why).
                async with conn.pipeline(), conn.transaction():
                    if self.local_settings is not None:  # behind a pooler: see pooler.py
                        await conn.execute(plain("session_settings_local"), self.local_settings)
                    lock = await conn.execute(self.app.query("queue_lock_limited"), params)
                    cur = await conn.execute(self.app.query("job_claim_flow"), params)
                rows = await cur.fetchall()
                self._flow_idle = not rows and not await lock.fetchall()
                self._flow_busy = bool(rows)
                self._flow_at = time.monotonic()
            else:
                cur = await pooler_execute(
                    conn, self.app.query("job_claim_batch"), params, settings=self.local_settings
                )
                rows = await cur.fetchall()
        jobs, poison = decode_rows(rows)
        if poison:  # rows that cannot be decoded fail alone (see decode.py)
            assert self.completer is not None
            fail_undecodable(poison, self.held, self.completer)
        self.held.add_many([(job.id, job.attempt) for job in jobs])
        self.claimed += len(jobs)
        if self.app.hooks.claimed:
            self.app.hooks.claim(jobs)
        return jobs

    async def _burst_done(self, dispatcher: Dispatcher) -> bool:
        """--burst: True once nothing runs or waits here, every outcome is written, and no
        job of this worker's queues is due (a due job another worker holds locked, or
        one the flow claim has not looked at yet, keeps the burst going)."""
        if dispatcher.running or dispatcher.buffer:
            return False
        assert self.completer is not None
        if not await self.completer.drain(timeout=10):
            return False
        try:
            async with self.pool.connection() as conn:
                cur = await conn.execute(
                    self.app.query("job_seconds_to_next"),
                    {"queues": self.config.queues, "skip_tasks": self.skip_tasks},
                )
                row = await cur.fetchone()
        except psycopg.Error:
            return False
        return row is None or row[0] is None or float(row[0]) > 0

    @property
    def burst_outcome(self) -> dict[str, int]:
        """What this worker's jobs did (``--burst`` reports it and exits 1 unless only
        successes): succeeded, failed (for good), retried (failed, to run again later),
        lost (results discarded: the lease was lost)."""
        c = self.completer
        if c is None:
            return {"succeeded": 0, "failed": 0, "retried": 0, "lost": 0}
        return {"succeeded": c.succeeded, "failed": c.failed, "retried": c.retried, "lost": c.lost}

    async def _idle_timeout(self) -> float:
        """Seconds to sleep when the queues look empty: until the next run_at, at most
        the poll interval."""
        try:
            async with self.pool.connection() as conn:
                cur = await conn.execute(
                    self.app.query("job_seconds_to_next"),
                    {"queues": self.config.queues, "skip_tasks": self.skip_tasks},
                )
                row = await cur.fetchone()
        except psycopg.Error:
            return self.poll_interval
        if row is None or row[0] is None:
            return self.poll_interval
        return max(0.0, min(float(row[0]), self.poll_interval))

    @property
    def poll_interval(self) -> float:
        """The longest idle sleep: ``config.poll_interval``, or at most
        ``NO_LISTEN_POLL_INTERVAL`` while notifications cannot arrive (behind a
        transaction pooler without a listen DSN: see ``Listener.deaf``)."""
        if self.listener is not None and self.listener.deaf:
            return min(self.config.poll_interval, NO_LISTEN_POLL_INTERVAL)
        return self.config.poll_interval

    async def _sleep(self, seconds: float, wake: asyncio.Event | None = None) -> None:
        assert self._stop_event is not None
        waiters = [asyncio.ensure_future(self._stop_event.wait())]
        if wake is not None:
            waiters.append(asyncio.ensure_future(wake.wait()))
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        """A service (completer, listener, reaper, ...) must not die silently: if one
        fails, say so and stop the worker, which hands its jobs back (a supervisor, or
        systemd, starts a fresh one)."""
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        log.error(
            "worker service %s failed; stopping this worker",
            task.get_name(),
            exc_info=(type(exc), exc, exc.__traceback__) if exc else None,
        )
        self._set_stop(immediate=False)

    def _lost_from_thread(self, jobs: list[tuple[int, int]]) -> None:
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed: the worker is gone
                self._loop.call_soon_threadsafe(self._lost, jobs)

    def _cancel(self, job_id: int) -> None:
        if self.dispatcher is not None:
            self.dispatcher.cancel([job_id])

    def _cancel_from_thread(self, job_ids: list[int]) -> None:
        if self._loop is not None and self.dispatcher is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed: the worker is gone
                self._loop.call_soon_threadsafe(self.dispatcher.cancel, job_ids)

    def _lost(self, jobs: list[tuple[int, int]]) -> None:
        if self.dispatcher is not None:
            self.dispatcher.lost(jobs)
        else:
            for job_id, attempt in jobs:
                self.held.discard(job_id, attempt)
