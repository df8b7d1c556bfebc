"""Results: the ``Job`` handle that enqueue returns, and waiting for a job's outcome.

A ``Job`` is the job id (an ``int``: it goes anywhere an id goes) that can wait:
``job.result(timeout=None)`` blocks, ``await job.wait(timeout=None)`` awaits. Both return
the handler's stored JSON result, decoded, when the job succeeded; raise ``JobFailed``
(with the last error's kind, type and message) when it failed, ``JobCancelled`` when it
was cancelled, ``ResultTimeout`` (naming the job's state) when ``timeout`` seconds pass
first, and ``JobNotFound`` if no job has that id.

How the wait works: the row is read once; a finished job costs that one query. Otherwise
the waiter registers with the app's ``DoneListener`` (``done_listener.py``): one LISTEN
connection on ``<schema>_done`` per App, shared by every waiter of the process (sync and
async), so a thousand waiters cost one connection. Every statement that finishes jobs
names them on that channel (a completion batch in one NOTIFY per 300 ids). The waiter
reads the row again when its id is named, when the listener has (re)connected (notices
sent while it was not listening are lost, so everyone re-reads), and every ``recheck``
seconds as a safety net. Since the waiter registers before its read and the listener
wakes everyone once its LISTEN is in place, a job that finishes after the read is always
heard of.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, cast

import psycopg

from . import producer
from .db import first_line
from .done_listener import DoneListener as DoneListener  # re-exported: app.py, tests
from .done_listener import done_listener
from .errors import InvalidJobError, JobCancelled, JobFailed, JobNotFound, ResultTimeout

if TYPE_CHECKING:
    from .app import App

log = logging.getLogger("pgqueue.results")

FINISHED = frozenset({"succeeded", "failed", "cancelled"})
RECHECK_INTERVAL = 30.0
"""Seconds between safety re-reads of a waited-for job; the wake-up itself is the NOTIFY."""
_READ_RETRY_MAX = 5.0  # longest pause after a failed re-read (the database away)


class Job(int):
    """A job id that can wait for the job's outcome; what ``enqueue``/``defer`` return.

    It *is* the id (``Job(42, app) == 42``, JSON-encodes and pickles as ``42``), so code
    that stores or passes ids keeps working. Get one for any id with ``app.job(id)``.
    Nothing is read until ``result()``, ``wait()`` or ``state()`` is called.
    """

    # Each App has its own subclass that carries the app as a class attribute, so a handle
    # is a bare int with no per-object dict: bulk enqueues build thousands of them.
    __slots__ = ()
    _app: ClassVar[App]

    def __new__(cls, job_id: int, app: App) -> Job:
        return int.__new__(job_type(app), job_id)

    def __reduce__(self) -> tuple[Any, ...]:
        return (int, (int(self),))  # a plain id on the other side (an App does not pickle)

    def __copy__(self) -> Job:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Job:
        return self

    @property
    def id(self) -> int:
        """The job id as a plain ``int``."""
        return int(self)

    @property
    def app(self) -> App:
        """The App the job belongs to."""
        return self._app

    def state(self) -> str:
        """The job's state now: waiting, queued, running, succeeded, failed or cancelled.
        Raises ``JobNotFound`` if there is no such job (or it was pruned)."""
        if self._app._eager is not None:  # pgqueue.testing.eager(app)
            return self._app._eager.get(int(self)).state
        return _read(self._app, int(self)).state

    def result(self, timeout: float | None = None, *, recheck: float = RECHECK_INTERVAL) -> Any:
        """Block until the job finishes and return its result (the handler's return
        value as JSON, decoded; None if it returned nothing).

        Raises ``JobFailed`` (the job failed for good), ``JobCancelled``,
        ``ResultTimeout`` after ``timeout`` seconds (None: wait as long as it takes;
        0: look once), ``JobNotFound``. ``recheck``: seconds between safety re-reads
        (the normal wake-up is the NOTIFY sent when the job finishes). It blocks the
        calling thread: in async code (an ``async def`` handler too) use ``await
        job.wait()``.
        """
        if self._app._eager is not None:
            return self._app._eager.result(int(self))
        return wait_sync(self._app, int(self), timeout, recheck)

    def get(self, timeout: float | None = None) -> Any:
        """Celery's name for ``result``: the same return value and exceptions."""
        return self.result(timeout)

    async def wait(self, timeout: float | None = None, *, recheck: float = RECHECK_INTERVAL) -> Any:
        """``result()`` for asyncio code: the same return value and exceptions."""
        if self._app._eager is not None:
            return self._app._eager.result(int(self))
        return await wait_async(self._app, int(self), timeout, recheck)


def job_type(app: App) -> type[Job]:
    """The app's own ``Job`` subclass (created once per App)."""
    found = app._job_type
    if found is None:
        found = type(
            "Job",
            (Job,),
            {
                "__slots__": (),
                "_app": app,
                "__new__": int.__new__,
                "__module__": __name__,
                "__qualname__": "Job",
            },
        )
        app._job_type = found
    return found


def jobs_of(app: App, ids: list[int]) -> list[Job]:
    """``Job`` handles for ids just written."""
    make = cast("Callable[[int], Job]", job_type(app))
    return list(map(make, ids))


def check_job_id(value: object) -> int:
    """``value`` as a job id, or ``InvalidJobError``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**63:
        raise InvalidJobError(f"a job id is a positive whole number, got {value!r}")
    return int(value)


# -- reading the outcome --------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """``job_outcome``'s row."""

    state: str
    result: Any
    last_error: dict[str, Any] | None
    task: str
    attempt: int
    max_attempts: int
    scheduled: bool

    @property
    def finished(self) -> bool:
        return self.state in FINISHED


def _outcome(job_id: int, rows: list[tuple[Any, ...]]) -> Outcome:
    if not rows:
        raise JobNotFound(f"no job with id {job_id} (never enqueued, or pruned after it finished)")
    r = rows[0]
    return Outcome(str(r[0]), r[1], r[2], str(r[3]), int(r[4]), int(r[5]), bool(r[6]))


def _read(app: App, job_id: int) -> Outcome:
    with app._connection(None) as conn:
        return _outcome(job_id, producer.run_sync(conn, app.query("job_outcome"), {"id": job_id}))


async def _aread(app: App, job_id: int) -> Outcome:
    async with app._aconnection(None) as conn:
        rows = await producer.run_async(conn, app.query("job_outcome"), {"id": job_id})
    return _outcome(job_id, rows)


def settle(job_id: int, row: Outcome) -> Any:
    """A finished job's result, or its failure raised."""
    if row.state == "succeeded":
        return row.result
    err = row.last_error if isinstance(row.last_error, dict) else {}
    if row.state == "cancelled":
        if err.get("kind") not in ("cancelled", "dependency"):
            err = {}  # an older attempt's error is not why it was cancelled
        raise JobCancelled(
            job_id, row.task, "cancelled", err.get("kind"), err.get("type"), err.get("message")
        )
    raise JobFailed(
        job_id, row.task, row.state, err.get("kind"), err.get("type"), err.get("message")
    )


def _timed_out(job_id: int, row: Outcome, timeout: float | None) -> ResultTimeout:
    if row.state == "waiting":
        what = "waiting for the jobs it depends on"
    elif row.state == "running":
        what = f"running (attempt {row.attempt} of {row.max_attempts})"
    elif row.scheduled:
        what = "queued, scheduled for later (run_at ahead)"
    elif row.attempt:
        what = f"queued for another attempt ({row.attempt} of {row.max_attempts} used)"
    else:
        what = "queued, not started yet"
    return ResultTimeout(
        job_id,
        row.state,
        f"job {job_id} ({row.task}) did not finish within {timeout:g}s: it is {what}",
    )


def _check(timeout: float | None, recheck: float) -> float | None:
    """The deadline (monotonic) for ``timeout``; ``InvalidJobError`` for bad values."""
    for name, value in (("timeout", timeout), ("recheck", recheck)):
        if value is None and name == "timeout":
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or math.isnan(value)
            or value < 0
            or (name == "recheck" and value == 0)
        ):
            low = ">= 0" if name == "timeout" else "> 0"
            raise InvalidJobError(f"{name} must be a number of seconds {low}, got {value!r}")
    if timeout is None or math.isinf(timeout):
        return None
    return time.monotonic() + timeout


def _pause(deadline: float | None, recheck: float) -> float:
    return recheck if deadline is None else max(0.0, min(recheck, deadline - time.monotonic()))


def _reread_failed(job_id: int, exc: Exception, failures: int) -> float:
    log.warning("job %d: reading its state failed, waiting on: %s", job_id, first_line(exc))
    return min(0.1 * 2.0 ** min(failures, 10), _READ_RETRY_MAX)


def wait_sync(app: App, job_id: int, timeout: float | None, recheck: float) -> Any:
    """``Job.result``: see there. Database errors of the first read propagate; later
    ones (the server restarting while we wait) are logged and the wait goes on."""
    deadline = _check(timeout, recheck)
    row = _read(app, job_id)
    if row.finished:
        return settle(job_id, row)
    if deadline is not None and _pause(deadline, recheck) <= 0:
        raise _timed_out(job_id, row, timeout)
    woken = threading.Event()
    unwatch = done_listener(app).watch(job_id, woken.set)
    try:
        failures = 0
        while True:
            woken.clear()
            retry_in = math.inf
            try:
                row = _read(app, job_id)  # registered first: a finish after this is heard
                failures = 0
            except psycopg.OperationalError as exc:
                failures += 1
                retry_in = _reread_failed(job_id, exc, failures)
            if row.finished:
                return settle(job_id, row)
            pause = _pause(deadline, recheck)
            if deadline is not None and pause <= 0:
                raise _timed_out(job_id, row, timeout)
            woken.wait(min(pause, retry_in))
    finally:
        unwatch()


async def wait_async(app: App, job_id: int, timeout: float | None, recheck: float) -> Any:
    """``Job.wait``: ``wait_sync`` for asyncio code."""
    deadline = _check(timeout, recheck)
    row = await _aread(app, job_id)
    if row.finished:
        return settle(job_id, row)
    if deadline is not None and _pause(deadline, recheck) <= 0:
        raise _timed_out(job_id, row, timeout)
    loop = asyncio.get_running_loop()
    woken = asyncio.Event()

    def wake() -> None:  # called from the listener's thread
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits any more
            loop.call_soon_threadsafe(woken.set)

    unwatch = done_listener(app).watch(job_id, wake)
    try:
        failures = 0
        while True:
            woken.clear()
            retry_in = math.inf
            try:
                row = await _aread(app, job_id)
                failures = 0
            except psycopg.OperationalError as exc:
                failures += 1
                retry_in = _reread_failed(job_id, exc, failures)
            if row.finished:
                return settle(job_id, row)
            pause = _pause(deadline, recheck)
            if deadline is not None and pause <= 0:
                raise _timed_out(job_id, row, timeout)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(woken.wait(), min(pause, retry_in))
    finally:
        unwatch()
