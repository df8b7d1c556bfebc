"""What ``Worker.run`` sets up around its claim loop: connection pools and background services.

The services run as asyncio tasks of the worker's loop: the ``Completer`` (batched result
writes), the ``Reaper``, the ``Pruner``, the ``Vacuumer``, priority aging (``Ager``), the
dependency sweep, ``UnknownTasks`` (rolling deploys), the ``Scheduler`` (when the app has
periodic tasks) and the ``Listener`` (with ``listen``). Each is kept on the worker under its name
(``worker.reaper``, ``worker.listener``, ...); one that fails stops the worker
(``Worker._background_done``).
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, NamedTuple

from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ..db import application_name, connect
from ..errors import ConfigurationError
from ..listener import Listener
from ..maintenance import Pruner, Reaper, Scheduler, Vacuumer
from ..maintenance.aging import Ager
from ..maintenance.dependencies import DependencySweep
from ..maintenance.unknown_tasks import UnknownTasks
from ..pooler import behind_pooler, with_options, worker_settings
from ..pools import AsyncPool
from ..sql import cancel_channel_for, channel_for
from .completer import Completer
from .config import WorkerConfig
from .dispatch import Dispatcher
from .heartbeat import Heartbeat
from .joblog import JobLog
from .transaction import TransactionSource

if TYPE_CHECKING:
    from .loop import Worker

# The worker runs the same few statements thousands of times: plan them once. Left to
# itself PostgreSQL re-plans the claim for every call (a custom plan per parameter set,
# ~1 ms of the ~1.5 ms a one-job claim took). tests/integration/test_explain.py checks
# the generic plans stay on their indexes.
GENERIC_PLANS = "-c plan_cache_mode=force_generic_plan -c lock_timeout=10s -c jit=off"
# (lock_timeout: a write that waits on a row someone else holds locked gives up after
# 10 s and is retried, instead of stalling the completer behind an open psql session.
# jit=off: the flow claim's recursive skip scan is estimated expensive on a big queue
# (cost 2.8M with a million queued jobs), which made PostgreSQL JIT-compile it: 715 ms
# of compiling for a statement that runs in 1.5 ms, on the claim connection, so the
# fast path waited too. Every statement here is a short one; JIT never pays off.)


class Pools(NamedTuple):
    """The worker's connections (see ``open_pools``)."""

    shared: AsyncConnectionPool
    claim: AsyncConnectionPool
    pooler: bool
    """``dsn`` goes through a transaction pooler (``pgqueue.pooler``)."""
    settings: dict[str, Any] | None
    """Behind a pooler: the parameters of ``session_settings_local``, which the claim and
    the completer send in each of their transactions (``pooler.execute``); None on a
    direct connection, where the startup options carry them."""


async def open_pools(dsn: str, cfg: WorkerConfig, worker_id: str) -> Pools:
    """The worker's pools, opened: a shared one for the completer and the maintenance
    services (1 connection, a second while both write at once), and the claim loop's own
    connection. Raises ``ConfigurationError`` naming the cause when they cannot fill
    within 30 s (each connection attempt has the DSN's connect timeout)."""
    pooler = await asyncio.to_thread(behind_pooler, dsn)

    def kwargs(role: str, extra: str = "") -> dict[str, Any]:
        if pooler:  # no startup options, nothing prepared: see pgqueue/pooler.py
            return {
                "autocommit": True,
                "prepare_threshold": None,
                "application_name": application_name(dsn, role, worker_id),
            }
        return {
            "autocommit": True,
            "options": with_options(dsn, GENERIC_PLANS + extra),
            "application_name": application_name(dsn, role, worker_id),
        }

    pool = AsyncPool(
        dsn,
        min_size=1,
        max_size=2,
        kwargs=kwargs("maintenance"),  # completions and maintenance
        open=False,
        name="pgqueue-worker",
        timeout=10,
    )
    # The claim loop's own connection (one claim at a time), so that a claim never waits
    # behind a completion batch or a maintenance statement. With --fast-claims it commits
    # claims asynchronously: see WorkerConfig.fast_claims.
    claim_pool = AsyncPool(
        dsn,
        min_size=1,
        max_size=1,
        kwargs=kwargs("claim", " -c synchronous_commit=off" if cfg.fast_claims else ""),
        open=False,
        name="pgqueue-claim",
        timeout=10,
    )
    try:
        await pool.open(wait=True, timeout=30)
        await claim_pool.open(wait=True, timeout=30)
    except PoolTimeout:
        await pool.close()
        await claim_pool.close()
        raise ConfigurationError(await asyncio.to_thread(_why_no_pool, dsn)) from None
    settings = worker_settings(cfg.fast_claims) if pooler else None
    return Pools(pool, claim_pool, pooler, settings)


def build_parts(
    worker: Worker,
    dsn: str,
    pools: Pools,
    executor: ThreadPoolExecutor,
    row: dict[str, Any],
) -> tuple[Heartbeat, JobLog, TransactionSource]:
    """Create the worker's heartbeat (not started), per-job log (started), completer and
    dispatcher (``worker.completer``, ``worker.dispatcher``), and the pools of handlers'
    transactions (opened on first use). Returns what the worker closes at the end."""
    schema = worker.app.schema
    cfg = worker.config
    pool = pools.shared
    assert worker._slot is not None  # (run() made it)
    heartbeat = Heartbeat(
        dsn,
        schema,
        row,
        cfg.lease,
        worker.held,
        worker._lost_from_thread,
        on_cancel=worker._cancel_from_thread,
        mode=cfg.heartbeat,
    )
    worker.heartbeat = heartbeat
    joblog = JobLog(logging.getLogger("pgqueue.worker"))  # the worker's own per-job lines
    joblog.start()
    hooks = worker.app.hooks
    worker.completer = Completer(
        pool,
        schema,
        worker.id,
        worker.held,
        worker._wake_up,
        joblog,
        hooks,
        settings=pools.settings,
    )
    # ctx.transaction(): handlers' own transactions, on connections opened on first use
    transactions = TransactionSource(dsn, schema, worker.id, cfg.concurrency, pools.pooler)
    worker.completer.observe = worker.on_outcome
    worker.dispatcher = Dispatcher(
        worker.app.tasks,
        worker.id,
        cfg.concurrency,
        cfg.prefetch,
        worker.held,
        worker.completer,
        executor,
        heartbeat.extend,
        worker._slot.set,
        joblog,
        hooks,
        heartbeat=heartbeat,
        limits=worker.app.limits,
        transactions=transactions,
    )
    worker.dispatcher.skip_tasks = worker.skip_tasks  # one list: see job_claim_batch
    return heartbeat, joblog, transactions


def _why_no_pool(dsn: str) -> str:
    """Why the pools did not fill: a direct connection's own error (timeout, refused, auth),
    or, if that works, the likely cause."""
    try:
        connect(dsn).close()
    except ConfigurationError as exc:
        return f"the worker's connection pool did not open within 30 s: {exc}"
    return (
        "the worker's connection pool did not open within 30 s although a single connection "
        "works: the server may be out of connections (max_connections) or too slow to answer"
    )


def build_maintenance(worker: Worker, pool: AsyncConnectionPool, pooler: bool = False) -> None:
    """Create the worker's maintenance services (``reaper``, ``pruner``, ``vacuumer``,
    ``ager``) on it; ``start_services`` runs them."""
    cfg = worker.config
    schema = worker.app.schema
    worker.reaper = Reaper(
        pool, schema, cfg.maintenance_interval, dead_worker_after=max(cfg.lease * 3, 60.0)
    )
    worker.pruner = Pruner(pool, schema, cfg.retention, interval=cfg.prune_interval)
    worker.vacuumer = Vacuumer(pool, schema, session_lock=not pooler)
    worker.ager = Ager(pool, schema, cfg.queues, interval=cfg.maintenance_interval)
    worker.unknown_tasks = UnknownTasks(pool, schema, timeout=cfg.unknown_task_timeout)


def start_services(worker: Worker, pool: AsyncConnectionPool, dsn: str) -> list[asyncio.Task[Any]]:
    """Start the completer and the maintenance services as tasks, the scheduler too if
    the app has periodic tasks, and the listener with ``listen``; each task's failure
    stops the worker. Returns the tasks (the shutdown cancels them)."""
    assert worker.completer is not None and worker.reaper is not None
    assert worker.pruner is not None
    cfg = worker.config
    schema = worker.app.schema
    background = [
        asyncio.create_task(worker.completer.run(), name="pgqueue-completer"),
        asyncio.create_task(worker.reaper.run(), name="pgqueue-reaper"),
        asyncio.create_task(worker.pruner.run(), name="pgqueue-pruner"),
        asyncio.create_task(worker.vacuumer.run(), name="pgqueue-vacuumer"),
        asyncio.create_task(worker.ager.run(), name="pgqueue-priority-aging"),
        asyncio.create_task(worker.unknown_tasks.run(), name="pgqueue-unknown-tasks"),
        asyncio.create_task(  # every 10 maintenance intervals (10 s by default)
            DependencySweep(pool, schema, interval=10 * cfg.maintenance_interval).run(),
            name="pgqueue-dependency-sweep",
        ),
    ]
    # Periodic tasks: every worker schedules all of the app's (one job per tick anyway).
    worker.scheduler = Scheduler(pool, schema, worker.app.schedules.values())
    if worker.app.schedules and cfg.periodic:
        background.append(asyncio.create_task(worker.scheduler.run(), name="pgqueue-scheduler"))
    if cfg.listen:
        listen_dsn = worker.app.listen_dsn
        worker.listener = Listener(
            listen_dsn or dsn,
            channel_for(schema),
            cfg.queues,
            worker._wake_up,
            cancel_channel=cancel_channel_for(schema),
            on_cancel=worker._cancel,
            worker_id=worker.id,
            # Through a pooler LISTEN may be dead: check once that a notification arrives.
            check_delivery_via=dsn if worker.pooler and listen_dsn is None else None,
        )
        background.append(asyncio.create_task(worker.listener.run(), name="pgqueue-listener"))
    for task in background:
        task.add_done_callback(worker._background_done)
    return background
