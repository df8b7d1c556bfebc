"""The enqueue API of ``App`` (sync and async): options -> validated rows -> ``producer``.

A mixin, so that ``app.py`` keeps to settings, the task registry and connections. Every
method validates everything before it writes: bad input raises ``InvalidJobError``
(naming the option and the fix) and nothing is written.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from contextvars import ContextVar
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from . import producer
from .errors import InvalidJobError, UnknownTaskError
from .hooks import EnqueueInfo, Hooks
from .jobspec import JobSpec, encode_items, to_params
from .limits import Limits
from .results import Job, jobs_of
from .tasks import Task

if TYPE_CHECKING:
    from .app import App
    from .eager import Eager

#: The keyword options of enqueue/enqueue_async/Task.options (besides connection).
OPTIONS = frozenset(
    {
        "queue",
        "priority",
        "run_at",
        "delay",
        "max_attempts",
        "dedupe_key",
        "unique_for",
        "replace",
        "group_key",
        "after",
    }
)


class Enqueueing:
    """``enqueue``, ``enqueue_many``, ``enqueue_batch`` and their async twins."""

    schema: str
    tasks: dict[str, Task]
    strict_tasks: bool
    limits: Limits
    hooks: Hooks
    _eager: Eager | None  # pgqueue.testing.eager(app): run at once, no database

    if TYPE_CHECKING:

        def _connection(self, connection: Any) -> AbstractContextManager[Any]: ...

        def _aconnection(self, connection: Any) -> AbstractAsyncContextManager[Any]: ...

    def _app(self) -> App:
        return cast("App", self)

    # -- building rows ---------------------------------------------------------------
    def _params(self, spec: JobSpec) -> dict[str, Any]:
        if not isinstance(spec, JobSpec):
            raise InvalidJobError(
                f"enqueue_many takes JobSpec items, got a {type(spec).__name__}: use "
                "JobSpec('task', args=[...], kwargs={...}) or my_task.spec(*args, **kwargs), "
                "or enqueue_batch(task, items) for many jobs of one task"
            )
        task = self.tasks.get(spec.task)
        if task is None and self.strict_tasks:
            known = ", ".join(sorted(self.tasks)) or "none"
            raise UnknownTaskError(
                f"unknown task {spec.task!r} (registered: {known}); register it with "
                "@app.task, or use App(strict_tasks=False) to enqueue tasks defined elsewhere"
            )
        if task is not None:  # the task's defaults, without changing the caller's spec
            return to_params(spec, task.queue, task.priority, task.max_attempts, self.limits)
        return to_params(spec, limits=self.limits)

    def _spec(
        self,
        task: Task | str,
        args: Sequence[Any] | None,
        kwargs: Mapping[str, Any] | None,
        **options: Any,
    ) -> JobSpec:
        name = task.name if isinstance(task, Task) else task
        unknown = set(options) - OPTIONS
        if unknown:
            raise InvalidJobError(
                f"unknown enqueue option(s): {', '.join(sorted(unknown))} "
                f"(the options are: {', '.join(sorted(OPTIONS))}, connection)"
            )
        # Passed on as given: to_params refuses what is not a list/tuple and a mapping
        # (tuple("abc") would silently make three arguments).
        return JobSpec(
            name, () if args is None else args, {} if kwargs is None else kwargs, **options
        )

    # -- sync --------------------------------------------------------------------------
    def enqueue(
        self,
        task: Task | str,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        *,
        connection: Any = None,
        queue: str | None = None,
        priority: int | None = None,
        run_at: datetime | None = None,
        delay: float | None = None,
        max_attempts: int | None = None,
        dedupe_key: str | None = None,
        unique_for: float | None = None,
        replace: bool = False,
        group_key: str | None = None,
        after: Iterable[int] | int | None = None,
    ) -> Job:
        """Enqueue one job; return its ``Job`` (the id, an ``int``, that can wait for the
        result: ``pgqueue.results``). With ``connection`` the row is written in the
        caller's transaction (it exists only if that commits); otherwise it is committed
        before this returns.

        Unique jobs: while a job with the same ``dedupe_key`` is waiting, queued or
        running, nothing is written and that job is returned (concurrent enqueues of one
        key make one job). ``unique_for`` (seconds): a job with the key that finished
        less than that long ago counts too. ``replace``: a queued or waiting holder of the
        key takes this call's arguments (a running one is left as it is).
        ``group_key``: fairness, jobs of one group (a tenant) are claimed round-robin
        with other groups. ``after``: ids of jobs that must succeed first (it waits until
        then, and is cancelled if one fails). Raises ``InvalidJobError`` (nothing
        written) for bad input or an ``after`` id that does not exist,
        ``SchemaNotMigrated`` if the schema is missing or old.
        """
        params = self._params(
            self._spec(
                task,
                args,
                kwargs,
                queue=queue,
                priority=priority,
                run_at=run_at,
                delay=delay,
                max_attempts=max_attempts,
                dedupe_key=dedupe_key,
                unique_for=unique_for,
                replace=replace,
                group_key=group_key,
                after=after,
            )
        )
        if self._eager is not None:
            return self._eager.run(params)
        with _hooked(self.hooks, [params]), self._connection(connection) as conn:
            job_id = producer.insert_one(conn, self.schema, params, own=connection is None)
            _written(self.hooks, [job_id])
        return Job(job_id, self._app())

    def enqueue_many(self, jobs: Iterable[JobSpec], *, connection: Any = None) -> list[Job]:
        """Enqueue many jobs in one statement (one round trip); their ``Job`` ids in order.

        All jobs are validated first: one bad job raises ``InvalidJobError`` and none is
        written. Jobs skipped because their dedupe key is held are not in the result
        (``unique_for`` and ``replace`` are for ``enqueue``, one job at a time).
        """
        params = [self._params(spec) for spec in jobs]
        if not params:
            return []
        _no_unique_options(params)
        if self._eager is not None:
            return [self._eager.run(p) for p in params]
        with _hooked(self.hooks, params), self._connection(connection) as conn:
            ids = producer.insert_many(conn, self.schema, params, own=connection is None)
            _written(self.hooks, ids)
        return jobs_of(self._app(), ids)

    def enqueue_batch(
        self,
        task: Task | str,
        items: Iterable[Any],
        *,
        queue: str | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
        group_key: str | None = None,
        connection: Any = None,
    ) -> list[Job]:
        """The fastest bulk path: many jobs of one task with the same options, due now.

        Each item is a dict (keyword arguments) or a list/tuple (positional arguments).
        Options are checked once; per item only the arguments are encoded, and the rows
        go in with one COPY. Returns the ``Job`` ids in order. One bad item raises
        ``InvalidJobError`` naming it, and nothing is written.
        """
        first = self._params(
            JobSpec(
                task.name if isinstance(task, Task) else task,
                queue=queue,
                priority=priority,
                max_attempts=max_attempts,
                group_key=group_key,
            )
        )
        encoded = encode_items(first["task"], items, self.limits)
        if not encoded:
            return []
        if self._eager is not None:
            return [self._eager.run({**first, "args": a, "kwargs": k}) for a, k in encoded]
        with _hooked(self.hooks, [first], len(encoded)), self._connection(connection) as conn:
            ids = producer.insert_uniform(conn, self.schema, first, encoded)
            _written(self.hooks, ids)
        return jobs_of(self._app(), ids)

    # -- async -------------------------------------------------------------------------
    async def enqueue_async(
        self,
        task: Task | str,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        *,
        connection: Any = None,
        queue: str | None = None,
        priority: int | None = None,
        run_at: datetime | None = None,
        delay: float | None = None,
        max_attempts: int | None = None,
        dedupe_key: str | None = None,
        unique_for: float | None = None,
        replace: bool = False,
        group_key: str | None = None,
        after: Iterable[int] | int | None = None,
    ) -> Job:
        """``enqueue`` for asyncio code; ``connection`` is an async connection or session."""
        params = self._params(
            self._spec(
                task,
                args,
                kwargs,
                queue=queue,
                priority=priority,
                run_at=run_at,
                delay=delay,
                max_attempts=max_attempts,
                dedupe_key=dedupe_key,
                unique_for=unique_for,
                replace=replace,
                group_key=group_key,
                after=after,
            )
        )
        if self._eager is not None:
            return await self._eager.run_async(params)
        with _hooked(self.hooks, [params]):
            async with self._aconnection(connection) as conn:
                job_id = await producer.insert_one_async(
                    conn, self.schema, params, own=connection is None
                )
                _written(self.hooks, [job_id])
        return Job(job_id, self._app())

    async def enqueue_many_async(
        self, jobs: Iterable[JobSpec], *, connection: Any = None
    ) -> list[Job]:
        """``enqueue_many`` for asyncio code."""
        params = [self._params(spec) for spec in jobs]
        if not params:
            return []
        _no_unique_options(params)
        if self._eager is not None:
            return [await self._eager.run_async(p) for p in params]
        with _hooked(self.hooks, params):
            async with self._aconnection(connection) as conn:
                ids = await producer.insert_many_async(
                    conn, self.schema, params, own=connection is None
                )
                _written(self.hooks, ids)
        return jobs_of(self._app(), ids)


def _no_unique_options(params: list[dict[str, Any]]) -> None:
    for n, p in enumerate(params):
        if p["unique_for"] is not None or p["replace"]:
            raise InvalidJobError(
                f"job {n} of the batch: unique_for and replace work with enqueue (one job "
                "at a time); in a batch a held dedupe_key just skips the job"
            )


# The EnqueueInfo of the call in progress, for _written (one per thread or task).
_current: ContextVar[EnqueueInfo | None] = ContextVar("pgqueue_enqueue_info", default=None)


def _hooked(
    hooks: Hooks, params: list[dict[str, Any]], count: int | None = None
) -> contextlib.AbstractContextManager[None]:
    """The ``around_enqueue`` hooks around one call's write (a no-op when none)."""
    if not hooks.enqueue:
        return contextlib.nullcontext()
    return _around(hooks, params, count)


@contextlib.contextmanager
def _around(hooks: Hooks, params: list[dict[str, Any]], count: int | None) -> Iterator[None]:
    info = EnqueueInfo(params[0]["task"], params[0]["queue"], count or len(params))
    token = _current.set(info)
    try:
        with hooks.enqueueing(info, params):
            yield
    finally:
        _current.reset(token)


def _written(hooks: Hooks, ids: list[int]) -> None:
    """Tell the hooks of the call in progress which ids were written."""
    if hooks.enqueue:
        info = _current.get()
        if info is not None:
            info.job_ids = list(ids)
