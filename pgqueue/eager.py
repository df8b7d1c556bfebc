"""Eager mode, for unit tests: enqueue runs the handler at once, in the caller, with no
database (Celery's ``task_always_eager``). Turn it on with ``pgqueue.testing.eager(app)``.

What still happens as in production: every enqueue option and argument is validated
(bad input raises ``InvalidJobError``), and the handler gets its arguments after the
JSON round trip a worker's would (a tuple arrives as a list, typed values as their types,
``bind=True`` handlers a ``JobContext``). The return value must be JSON, as a worker's.

Its limits (test those with ``app.drain()`` on a real database instead):
- nothing is written and no connection is opened: ``connection=`` is ignored, so a job
  enqueued in a transaction that later rolls back has run all the same;
- no scheduling, no retries: ``delay``/``run_at`` are ignored, a failure is final (with
  ``propagate`` the exception, ``Retry``/``Snooze``/``Cancel`` included, comes out of the
  enqueue call);
- no dedupe (``dedupe_key``, ``unique_for``, ``replace``), no ``after=`` ordering beyond
  "in the order enqueued", no ``group_key`` fairness, no queue limits, no timeouts;
- an ``async def`` handler enqueued from sync code runs on a fresh event loop (in a
  thread of its own if the caller is inside one);
- a job of a task this app does not register (``strict_tasks=False``) is recorded,
  ``queued``, and never runs.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import traceback
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import codec
from .errors import Cancel, JobCancelled, JobFailed, JobNotFound, ResultTimeout

if TYPE_CHECKING:
    from .app import App
    from .results import Job
    from .tasks import Task


@dataclass
class EagerJob:
    """A job enqueued in eager mode and what came of it: ``state`` is ``succeeded``,
    ``failed``, ``cancelled`` or ``queued`` (no handler here); ``error`` holds ``kind``,
    ``type``, ``message`` and ``traceback`` of a failure."""

    id: int
    task: str
    queue: str
    args: list[Any]
    kwargs: dict[str, Any]
    options: dict[str, Any]
    state: str = "queued"
    result: Any = None
    error: dict[str, Any] | None = None
    exception: BaseException | None = field(default=None, repr=False)


class Eager:
    """The eager runner an app uses while ``pgqueue.testing.eager(app)`` is active;
    ``jobs`` lists every job enqueued meanwhile, in order."""

    def __init__(self, app: App, *, propagate: bool = True) -> None:
        self.app = app
        self.propagate = propagate
        self.jobs: list[EagerJob] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    # -- enqueue --------------------------------------------------------------------------
    def _record(self, params: dict[str, Any]) -> tuple[EagerJob, Task | None]:
        with self._lock:
            job_id = next(self._ids)
        options: dict[str, Any] = {
            k: params[k]
            for k in ("priority", "run_at", "delay", "max_attempts", "dedupe_key", "group_key")
            if k in params
        }
        options["after"] = params.get("depends_on")
        job = EagerJob(
            job_id,
            params["task"],
            params["queue"],
            codec.loads(params["args"]),
            codec.loads(params["kwargs"]),
            options,
        )
        with self._lock:
            self.jobs.append(job)
        return job, self.app.tasks.get(job.task)

    def run(self, params: dict[str, Any]) -> Job:
        """Record the job and run its handler now (``params``: ``jobspec.to_params``)."""
        job, task = self._record(params)
        if task is not None:
            try:
                args, kwargs = self._arguments(job, task, params)
                value = task.func(*args, **kwargs)
                if task.is_async:
                    value = _run_coroutine(value)
            except BaseException as exc:
                self._failed(job, exc)
            else:
                self._succeeded(job, value)
        return self._handle(job)

    async def run_async(self, params: dict[str, Any]) -> Job:
        """``run`` for ``enqueue_async``: an ``async def`` handler is awaited here."""
        job, task = self._record(params)
        if task is not None:
            try:
                args, kwargs = self._arguments(job, task, params)
                value = task.func(*args, **kwargs)
                if task.is_async:
                    value = await value
            except BaseException as exc:
                self._failed(job, exc)
            else:
                self._succeeded(job, value)
        return self._handle(job)

    def _arguments(
        self, job: EagerJob, task: Task, params: dict[str, Any]
    ) -> tuple[list[Any], dict[str, Any]]:
        """Decoded anew from the JSON (the handler may change them; ``job`` keeps its own)."""
        args: list[Any] = codec.loads(params["args"])
        kwargs: dict[str, Any] = codec.loads(params["kwargs"])
        if task.pass_context:
            from .worker.context import JobContext

            ctx = JobContext(job.id, job.task, 1, job.queue, "eager", _extend=_always)
            args.insert(0, ctx)
        return args, kwargs

    def _succeeded(self, job: EagerJob, value: Any) -> None:
        from .worker.runner import _result_json

        text = _result_json(value)
        if text is None:
            message = (
                f"the handler's return value ({type(value).__name__}) is not JSON; return "
                "plain str/int/float/bool/None/list/dict values"
            )
            job.state, job.error = "failed", _error("result_not_json", None, message)
            job.exception = TypeError(message)
            return
        job.state, job.result = "succeeded", json.loads(text)

    def _failed(self, job: EagerJob, exc: BaseException) -> None:
        kind = "cancelled" if isinstance(exc, Cancel) else "error"
        job.state = "cancelled" if isinstance(exc, Cancel) else "failed"
        job.error = _error(kind, exc, f"{type(exc).__name__}: {exc}")
        job.exception = exc

    def _handle(self, job: EagerJob) -> Job:
        from .results import Job

        if self.propagate and job.exception is not None:
            raise job.exception
        return Job(job.id, self.app)

    # -- results --------------------------------------------------------------------------
    def get(self, job_id: int) -> EagerJob:
        """The eager job with that id; ``JobNotFound`` if there is none."""
        for job in self.jobs:
            if job.id == job_id:
                return job
        raise JobNotFound(f"no job with id {job_id} was enqueued in eager mode")

    def result(self, job_id: int) -> Any:
        """What ``job.result()`` gives in eager mode: the result, ``JobFailed``,
        ``JobCancelled``, or ``ResultTimeout`` for a job that has no handler here."""
        job = self.get(job_id)
        if job.state == "succeeded":
            return job.result
        if job.state == "queued":
            raise ResultTimeout(
                job.id, "queued", f"job {job.id} ({job.task}) has no handler in this app"
            )
        err = job.error or {}
        kind = JobCancelled if job.state == "cancelled" else JobFailed
        raise kind(
            job.id, job.task, job.state, err.get("kind"), err.get("type"), err.get("message")
        )


def _always(job_id: int, attempt: int, seconds: float) -> bool:
    return True  # ctx.extend_lease() in eager mode: there is no lease to lose


def _error(kind: str, exc: BaseException | None, message: str) -> dict[str, Any]:
    return {
        "attempt": 1,
        "kind": kind,
        "type": None if exc is None else f"{type(exc).__module__}.{type(exc).__qualname__}",
        "message": message,
        "traceback": None if exc is None else "".join(traceback.format_exception(exc)),
    }


def _run_coroutine(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run an ``async def`` handler's coroutine to its end from sync code."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(1, thread_name_prefix="pgqueue-eager") as pool:
        return pool.submit(asyncio.run, coro).result()
