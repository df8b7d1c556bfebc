"""Lifecycle hooks: code of yours that runs around an enqueue, around each job run, and
when a job fails, is dead-lettered or loses its lease.

Register them on the ``App`` (``app.around_enqueue``, ``app.around_run``,
``app.on_failure``, ``app.on_dead_letter``, ``app.on_lease_lost``); ``pgqueue.otel``
and the worker's Prometheus metrics are built on them. With none registered, every call
site is one test of an empty list: the hot path does not change.

- ``around_enqueue(info)`` returns a context manager entered before the job (or batch)
  is written and left after (``info.job_ids`` is set by then; an exception from the
  write passes through it). Headers it puts in ``info.headers`` (strings) are stored
  with every job of the call (column ``headers``) and come back to the worker
  (``job.header_map()``). An exception it raises reaches the caller; before the write
  that means nothing is written.
- ``around_run(job)`` returns a context manager entered where the handler runs, in its
  thread (a sync handler) or task (an async one), so context variables it sets (the
  current span) are the handler's. The handler's exception passes through it, control
  ones (``Retry``, ``Snooze``, ``Cancel``) too; if it raises, the attempt fails as if
  the handler had.
- ``on_failure(failure)``, ``on_dead_letter(failure)`` and ``on_lease_lost(job)`` are
  called after the outcome is written, one at a time in a thread of their own
  (``pgqueue-hooks``), so a slow error reporter never holds up the worker. An exception
  they raise is logged and ignored.
- ``on_claimed(jobs)`` and ``on_finished(events)`` are the low-level pair the metrics use:
  called on the worker's event loop with a whole claim or a whole written batch, they
  must be quick and must not block. An exception is logged and ignored.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .worker.runner import Claimed, Outcome

log = logging.getLogger("pgqueue.hooks")

#: How a job's attempt ended, as ``on_finished`` is told.
SUCCEEDED, RETRIED, FAILED, CANCELLED, LOST, SNOOZED = (
    "succeeded",
    "retried",
    "failed",
    "cancelled",
    "lost",
    "snoozed",
)


@dataclass
class EnqueueInfo:
    """One enqueue call, as ``around_enqueue`` hooks see it."""

    task: str
    """The task of the first job (of every job, for ``enqueue`` and ``enqueue_batch``)."""
    queue: str
    count: int
    """How many jobs the call writes (1 for ``enqueue``)."""
    headers: dict[str, str] = field(default_factory=dict)
    """Set by hooks before the write; stored with every job of the call."""
    job_ids: list[int] = field(default_factory=list)
    """The ids written, set after the write (empty if it failed)."""


@dataclass
class Failure:
    """A failed attempt, after it was written: retried later, or dead-lettered."""

    job: Claimed
    error: dict[str, Any]
    """As stored in the job's ``errors``: kind, type, message, traceback."""
    exception: BaseException | None
    """The exception the handler raised (None for a timeout, or a job that could not be
    decoded)."""
    retrying: bool
    """True: the job runs again after its backoff; False: it is in the dead letter."""


Around = Callable[[Any], AbstractContextManager[Any]]
FinishedEvent = tuple["Outcome", str]


class Hooks:
    """The registered hooks of one ``App`` (``app.hooks``)."""

    def __init__(self) -> None:
        self.enqueue: list[Callable[[EnqueueInfo], AbstractContextManager[Any]]] = []
        self.run: list[Callable[[Claimed], AbstractContextManager[Any]]] = []
        self.failure: list[Callable[[Failure], Any]] = []
        self.dead_letter: list[Callable[[Failure], Any]] = []
        self.lease_lost: list[Callable[[Claimed], Any]] = []
        self.claimed: list[Callable[[list[Claimed]], Any]] = []
        self.finished: list[Callable[[list[FinishedEvent]], Any]] = []
        self._queue: queue.SimpleQueue[list[FinishedEvent] | None] | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- enqueue ---------------------------------------------------------------------
    @contextlib.contextmanager
    def enqueueing(self, info: EnqueueInfo, params: list[dict[str, Any]]) -> Iterator[None]:
        """Enter every ``around_enqueue`` hook, then store ``info.headers`` in ``params``."""
        with ExitStack() as stack:
            for hook in self.enqueue:
                stack.enter_context(hook(info))
            if info.headers:
                text = json.dumps(info.headers, separators=(",", ":"))
                for p in params:
                    p["headers"] = text
            yield

    # -- the worker ---------------------------------------------------------------------
    def wrap(self, func: Callable[..., Any], is_async: bool, job: Claimed) -> Callable[..., Any]:
        """``func`` (a handler) called inside every ``around_run`` hook, in the thread or
        task it runs in."""
        hooks = list(self.run)
        if len(hooks) == 1:  # the common case (tracing): no ExitStack, it runs per job
            return _wrap_one(func, is_async, job, hooks[0])
        if is_async:

            async def call_async(*args: Any, **kwargs: Any) -> Any:
                with ExitStack() as stack:
                    for hook in hooks:
                        stack.enter_context(hook(job))
                    return await func(*args, **kwargs)

            return call_async

        def call(*args: Any, **kwargs: Any) -> Any:
            with ExitStack() as stack:
                for hook in hooks:
                    stack.enter_context(hook(job))
                return func(*args, **kwargs)

        return call

    @property
    def observing(self) -> bool:
        """Whether the worker must report finished attempts (``finish``)."""
        return bool(self.finished or self.failure or self.dead_letter or self.lease_lost)

    def claim(self, jobs: list[Claimed]) -> None:
        """A claim returned ``jobs`` (call only when ``self.claimed``)."""
        for hook in self.claimed:
            try:
                hook(jobs)
            except Exception:
                log.exception("an on_claimed hook failed (ignored)")

    def finish(self, events: list[FinishedEvent]) -> None:
        """Attempts whose end was written (or, for ``lost``, given up): the quick hooks
        now, the failure hooks in the hooks thread."""
        for hook in self.finished:
            try:
                hook(events)
            except Exception:
                log.exception("an on_finished hook failed (ignored)")
        if self.failure or self.dead_letter or self.lease_lost:
            notable = [e for e in events if e[1] in (RETRIED, FAILED, LOST)]
            if notable:
                self._thread_queue().put(notable)

    def close(self, timeout: float = 5.0) -> None:
        """Let the hooks thread finish what it was given (up to ``timeout`` seconds), then
        stop it (worker stop)."""
        with self._lock:
            q, self._queue = self._queue, None
            thread, self._thread = self._thread, None
        if q is not None:
            q.put(None)
        if thread is not None:
            thread.join(timeout)

    def _thread_queue(self) -> queue.SimpleQueue[list[FinishedEvent] | None]:
        with self._lock:
            if self._queue is None:
                self._queue = queue.SimpleQueue()
                self._thread = threading.Thread(
                    target=self._notify, args=(self._queue,), name="pgqueue-hooks", daemon=True
                )
                self._thread.start()
            return self._queue

    def _notify(self, q: queue.SimpleQueue[list[FinishedEvent] | None]) -> None:
        while (events := q.get()) is not None:
            for outcome, state in events:
                if state == LOST:
                    self._call(self.lease_lost, outcome.job, "on_lease_lost")
                    continue
                failure = Failure(
                    outcome.job,
                    outcome.error or {},
                    getattr(outcome, "exception", None),
                    retrying=state == RETRIED,
                )
                self._call(self.failure, failure, "on_failure")
                if state == FAILED:
                    self._call(self.dead_letter, failure, "on_dead_letter")

    @staticmethod
    def _call(hooks: list[Callable[[Any], Any]], arg: Any, what: str) -> None:
        for hook in hooks:
            try:
                hook(arg)
            except Exception:
                log.exception("an %s hook failed (ignored)", what)


def _wrap_one(
    func: Callable[..., Any],
    is_async: bool,
    job: Claimed,
    hook: Callable[[Claimed], AbstractContextManager[Any]],
) -> Callable[..., Any]:
    """``Hooks.wrap`` for a single ``around_run`` hook."""
    if is_async:

        async def call_async(*args: Any, **kwargs: Any) -> Any:
            with hook(job):
                return await func(*args, **kwargs)

        return call_async

    def call(*args: Any, **kwargs: Any) -> Any:
        with hook(job):
            return func(*args, **kwargs)

    return call
