"""``app.drain()``: run the jobs that are due, here and now, and say how each one ended.

For tests (Oban's ``drain_queue``, arq's burst mode). The caller blocks while a real
``Worker`` runs on an event loop in the calling thread, with ``burst`` on: the same claim
(``SKIP LOCKED``), the same handlers (``async def`` on the loop, plain ``def`` on the
worker's threads), the same fenced completion, retry backoff, dependencies and poison
handling as ``pgqueue work``. It stops once nothing it may run is due: a job scheduled
for later is left alone, and so is a failed job's retry whose backoff has not passed
(``with_scheduled=True`` makes both due first, once, as Oban's does). Periodic tasks
enqueue nothing during a drain. A due job that another process holds locked keeps the
drain waiting until it is free.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import DrainTimeout, InvalidJobError
from .jobspec import check_queue

if TYPE_CHECKING:
    from .app import App
    from .worker.runner import Outcome


@dataclass(frozen=True)
class Ran:
    """One run of one job during a drain.

    ``state``: ``succeeded``; ``failed`` (for good: the dead letter); ``retry`` (it
    failed and will run again after its backoff); ``cancelled``; ``snoozed``;
    ``handed_back`` (no handler for its task in this app); ``lost`` (its result was not
    written: the lease was lost). ``result`` is the handler's return value as stored
    (JSON); ``error`` the error recorded for a failure (kind, type, message, traceback).
    """

    id: int
    task: str
    attempt: int
    state: str
    result: Any = None
    error: dict[str, Any] | None = None


@dataclass(frozen=True)
class Drained:
    """What a drain ran, in the order the runs ended. ``counts`` maps each state to its
    number of runs; ``ok`` is True when every run succeeded (``pgqueue work --burst``
    exits 0 on the same condition)."""

    runs: list[Ran] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for run in self.runs:
            out[run.state] = out.get(run.state, 0) + 1
        return out

    @property
    def ok(self) -> bool:
        return all(run.state == "succeeded" for run in self.runs)

    def of(self, job_id: int) -> list[Ran]:
        """The runs of one job (more than one if it was retried within the drain)."""
        return [run for run in self.runs if run.id == int(job_id)]

    def __len__(self) -> int:
        return len(self.runs)


def drain(
    app: App,
    queues: Iterable[str] | str | None = None,
    *,
    with_scheduled: bool = False,
    concurrency: int = 1,
    timeout: float = 60.0,
) -> Drained:
    """Run every due job of ``queues`` (default: the queues of the app's tasks and every
    queue with a job waiting) and return how each run ended. Blocks the calling thread;
    from async code use ``await drain_async(...)``.

    ``with_scheduled``: jobs scheduled for later, and retries waiting out their backoff,
    are made due first (once, at the start; a retry scheduled during the drain waits).
    ``concurrency``: jobs run at once (1: one after another, in claim order: priority,
    then age). ``timeout``: seconds after which the drain stops, hands unfinished jobs
    back and raises ``DrainTimeout`` (a handler that never returns: an ``async def`` one
    is cancelled; a plain ``def`` one keeps its thread, which keeps the process from
    exiting until it returns, as in a worker). Raises
    ``RuntimeError`` when called inside a running event loop, ``InvalidJobError`` for a
    bad queue name, ``SchemaNotMigrated``/``ConfigurationError`` as a worker would.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(
            drain_async(
                app,
                queues,
                with_scheduled=with_scheduled,
                concurrency=concurrency,
                timeout=timeout,
            )
        )
    raise RuntimeError("app.drain() blocks: inside an event loop use await app.drain_async()")


async def drain_async(
    app: App,
    queues: Iterable[str] | str | None = None,
    *,
    with_scheduled: bool = False,
    concurrency: int = 1,
    timeout: float = 60.0,
) -> Drained:
    """``drain`` for asyncio code: the worker runs on the caller's event loop."""
    from .worker import Worker, WorkerConfig  # the worker imports App: not at module level

    names = await asyncio.to_thread(_queues, app, queues)
    if not names:
        return Drained()
    if with_scheduled:
        await asyncio.to_thread(_make_due, app, names)
    config = WorkerConfig(
        queues=names,
        concurrency=concurrency,
        burst=True,
        periodic=False,
        listen=False,  # burst looks again every 50 ms anyway: one connection less
        shutdown_timeout=0,
        maintenance_interval=1.0,
    )
    worker = Worker(app, config)
    outcomes: list[Outcome] = []
    worker.on_outcome = outcomes.append
    timed_out: list[bool] = []

    def stop() -> None:
        timed_out.append(True)
        worker.request_stop(immediate=True)

    timer = asyncio.get_running_loop().call_later(timeout, stop)
    try:
        await worker.run()
    finally:
        timer.cancel()
    runs = await asyncio.to_thread(_report, app, outcomes)
    if timed_out:
        raise DrainTimeout(
            f"the drain of {', '.join(names)} was stopped after {timeout}s with jobs still "
            f"running (handed back to the queue); it ran {len(runs)}: "
            f"{Drained(runs).counts}"
        )
    return Drained(runs)


def _queues(app: App, queues: Iterable[str] | str | None) -> list[str]:
    if isinstance(queues, str):
        queues = [queues]
    if queues is not None:
        names = [check_queue(q) for q in queues]
        if not names:
            raise InvalidJobError("drain(queues=[]) names no queue; leave it out for all")
        return list(dict.fromkeys(names))
    found = {t.queue for t in app.tasks.values()}
    with app._connection(None) as conn:
        found.update(r[0] for r in conn.execute(app.query("job_queues_pending")).fetchall())
    return sorted(found)


def _make_due(app: App, queues: list[str]) -> None:
    with app._connection(None) as conn:
        conn.execute(app.query("job_make_due"), {"queues": queues})


_FAILED = {"failed": "failed", "queued": "retry", "cancelled": "cancelled"}


def _report(app: App, outcomes: list[Outcome]) -> list[Ran]:
    """Each outcome as a ``Ran``; for the last run of each job the row says how it ended
    (the fenced write decides: a failure past max_attempts is final)."""
    ids = sorted({o.job.id for o in outcomes})
    rows: dict[int, tuple[Any, ...]] = {}
    if ids:
        with app._connection(None) as conn:
            cur = conn.execute(app.query("job_list_by_ids"), {"ids": ids})
            rows = {int(r[0]): r for r in cur.fetchall()}
    last = {o.job.id: n for n, o in enumerate(outcomes)}
    runs: list[Ran] = []
    for n, o in enumerate(outcomes):
        job = o.job
        row = rows.get(job.id)
        final = last[job.id] == n and row is not None and int(row[2]) == job.attempt
        if o.ok:
            state = "succeeded" if not final or row is None or row[1] == "succeeded" else "lost"
            runs.append(Ran(job.id, job.task, job.attempt, state, json.loads(o.result_json)))
            continue
        if o.release:
            state = "handed_back"
        elif o.snooze is not None:
            state = "snoozed" if not final or row is None else _FAILED.get(row[1], "snoozed")
            state = "snoozed" if state == "retry" else state
        elif o.cancelled:
            state = "cancelled"
        elif final and row is not None:
            state = _FAILED.get(str(row[1]), "lost")
        else:
            state = "failed" if o.final else "retry"
        runs.append(Ran(job.id, job.task, job.attempt, state, None, o.error))
    return runs
