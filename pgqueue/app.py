"""The ``App``: settings, the task registry, connections; the enqueue API comes from
``enqueueing.Enqueueing`` (sync and async)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, overload

from psycopg_pool import AsyncConnectionPool, ConnectionPool

from . import migrate as _migrate
from .admin import Admin
from .db import application_name, resolve_dsn, validate_schema
from .enqueueing import Enqueueing
from .errors import ConfigurationError, InvalidJobError
from .hooks import Hooks
from .jobspec import JobSpec, check_queue, check_task_name, to_params
from .limits import DEFAULT_MAX_DEPTH, DEFAULT_MAX_PAYLOAD_BYTES, Limits
from .periodic import Periodic, declare
from .pooler import behind_pooler, connect_detecting, resolve_listen_dsn
from .pools import AsyncPool, Pool
from .results import DoneListener, Job, check_job_id
from .sql import query
from .tasks import RetryPolicy, Task

if TYPE_CHECKING:
    from .drain import Drained
    from .eager import Eager

F = TypeVar("F", bound=Callable[..., Any])
H = TypeVar("H", bound=Callable[..., Any])


class App(Enqueueing):
    """Holds where the database is, the schema, and the registered tasks.

    ``dsn``: libpq string or URI; default ``PGQUEUE_DSN``, ``DATABASE_URL``, then the
    embedded server (see ``pgqueue.db``). ``schema``: default ``PGQUEUE_SCHEMA`` or
    ``pgqueue``. ``strict_tasks``: enqueue by name only for registered tasks (set False
    in a producer that does not import the task code). ``max_payload_bytes`` (default
    256 KiB, at most 1 MiB) and ``max_depth`` (default 64, at most 200): the limits on
    a job's arguments (``pgqueue.limits``). ``listen_dsn`` (default
    ``PGQUEUE_LISTEN_DSN``): a direct connection for LISTEN when ``dsn`` goes through a
    transaction pooler such as pgbouncer (``pgqueue.pooler``); without one there, workers
    and result waiters poll. Nothing connects until first use; a bad schema name or limit
    raises ``ConfigurationError`` here, a bad DSN on first use.
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        schema: str | None = None,
        strict_tasks: bool = True,
        pool_max_size: int = 10,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        max_depth: int = DEFAULT_MAX_DEPTH,
        listen_dsn: str | None = None,
    ) -> None:
        self.schema = validate_schema(schema)
        self.limits = Limits(max_payload_bytes=max_payload_bytes, max_depth=max_depth)
        self._dsn_arg = dsn
        self._dsn: str | None = None
        self._listen_dsn_arg = listen_dsn
        self._pooler: bool | None = None
        self.strict_tasks = strict_tasks
        if pool_max_size < 1:
            raise ConfigurationError("pool_max_size must be at least 1")
        self.pool_max_size = pool_max_size
        self.tasks: dict[str, Task] = {}
        self.schedules: dict[str, Periodic] = {}  # @app.periodic, see pgqueue/periodic.py
        self._lock = threading.Lock()
        self._pool: ConnectionPool | None = None
        self._apool: AsyncConnectionPool | None = None
        self._done_listener: DoneListener | None = None  # job.result()'s LISTEN (done_listener.py)
        self._job_type: type[Job] | None = None  # this app's Job subclass (results.py)
        self._schema_ok = False
        self.hooks = Hooks()  # lifecycle hooks (pgqueue/hooks.py): around_enqueue, ...
        self._eager: Eager | None = None  # pgqueue.testing.eager(app)

    # -- configuration -------------------------------------------------------------
    @property
    def dsn(self) -> str:
        """The resolved DSN (starting the embedded server if that is the choice)."""
        if self._dsn is None:
            self._dsn = resolve_dsn(self._dsn_arg)
        return self._dsn

    @property
    def listen_dsn(self) -> str | None:
        """The DSN for LISTEN connections if one is set (``listen_dsn``,
        ``PGQUEUE_LISTEN_DSN``), else None: LISTEN uses ``dsn``."""
        return resolve_listen_dsn(self._listen_dsn_arg)

    @property
    def pooler(self) -> bool:
        """Whether ``dsn`` goes through a connection pooler (``pgqueue.pooler``); found
        out on first use (one connection, cached per process)."""
        if self._pooler is None:
            self._pooler = behind_pooler(self.dsn)
        return self._pooler

    def query(self, name: str) -> str:
        """A named query from ``pgqueue/sql/queries.sql`` for this app's schema."""
        return query(self.schema, name)

    @property
    def admin(self) -> Admin:
        """Operator actions: queues, jobs, retry, cancel, pause/resume, prune, workers."""
        return Admin(self)

    # -- tasks ---------------------------------------------------------------------
    @overload
    def task(self, func: F) -> Task: ...
    @overload
    def task(self, func: None = None, **options: Any) -> Callable[[F], Task]: ...

    def task(self, func: Callable[..., Any] | None = None, **options: Any) -> Any:
        """Register a handler: ``@app.task`` or ``@app.task(queue=..., ...)``.

        Options: ``name`` (default ``module.function``), ``queue``, ``priority``,
        ``max_attempts``, ``timeout`` (seconds), ``retry`` (``RetryPolicy``),
        ``no_retry_for`` (exception types that fail the job at once), ``pass_context``
        (the handler gets a ``JobContext`` first; ``bind=True``, Celery's spelling, is the
        same). Raises ``ConfigurationError`` on a
        bad option or a name registered twice.
        """

        def register(f: Callable[..., Any]) -> Task:
            return self._register(f, **options)

        return register(func) if func is not None else register

    def periodic(self, **options: Any) -> Callable[[Callable[..., Any]], Task]:
        """Register a task run on a schedule, one job per tick over all workers:
        ``@app.periodic(cron="*/5 * * * *")`` or ``@app.periodic(every=60)``. Options:
        ``cron`` (+ ``tz``) or ``every``, ``name``, ``catch_up`` ("latest"/"none"),
        ``grace``, ``args``, ``kwargs`` and ``app.task``'s (``pgqueue.periodic.declare``).
        Raises ``ConfigurationError`` on a bad schedule or option."""
        return declare(self, **options)

    def _register(
        self,
        func: Callable[..., Any],
        *,
        name: str | None = None,
        queue: str = "default",
        priority: int = 0,
        max_attempts: int = 20,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        no_retry_for: Sequence[type[BaseException]] = (),
        pass_context: bool = False,
        bind: bool = False,
    ) -> Task:
        task_name = name or f"{func.__module__}.{func.__qualname__}".replace("<", "").replace(
            ">", ""
        )
        try:
            check_task_name(task_name)
            check_queue(queue)
            to_params(JobSpec(task_name, priority=priority, max_attempts=max_attempts))
        except InvalidJobError as exc:
            raise ConfigurationError(f"task {task_name!r}: {exc}") from None
        if timeout is not None and not timeout > 0:
            raise ConfigurationError(f"task {task_name!r}: timeout must be > 0 seconds")
        if task_name in self.tasks and self.tasks[task_name].func is not func:
            raise ConfigurationError(f"task name {task_name!r} is registered twice; pass name=")
        t = Task(
            self,
            task_name,
            func,
            queue=queue,
            priority=priority,
            max_attempts=max_attempts,
            timeout=timeout,
            retry=retry or RetryPolicy(),
            no_retry_for=tuple(no_retry_for),
            # bind=True (Celery's spelling): the handler's first argument is its
            # JobContext, whose retry(countdown=...) stands for Celery's self.retry.
            pass_context=pass_context or bind,
        )
        self.tasks[task_name] = t
        return t

    # -- hooks (pgqueue/hooks.py) ---------------------------------------------------------
    def around_enqueue(self, hook: H) -> H:
        """Register ``hook(info: EnqueueInfo) -> context manager``, entered around every
        enqueue call's write; headers it sets in ``info.headers`` are stored with the
        jobs. Its exception reaches the caller (before the write: nothing written)."""
        self.hooks.enqueue.append(hook)
        return hook

    def around_run(self, hook: H) -> H:
        """Register ``hook(job) -> context manager``, entered around each run of a
        handler, in the handler's own thread (sync) or task (async). If it raises, the
        attempt fails as if the handler had."""
        self.hooks.run.append(hook)
        return hook

    def on_failure(self, hook: H) -> H:
        """Register ``hook(failure: Failure)``, called after a failed attempt is written
        (``failure.retrying`` tells a retry from the dead letter), in the worker's hooks
        thread; its exceptions are logged and ignored."""
        self.hooks.failure.append(hook)
        return hook

    def on_dead_letter(self, hook: H) -> H:
        """Register ``hook(failure: Failure)``, called when a job fails for good (state
        ``failed``); as ``on_failure``, after it."""
        self.hooks.dead_letter.append(hook)
        return hook

    def on_lease_lost(self, hook: H) -> H:
        """Register ``hook(job)``, called when a worker gives a run up because its lease
        was lost (another worker may own the job); as ``on_failure``."""
        self.hooks.lease_lost.append(hook)
        return hook

    # -- sync API ----------------------------------------------------------------------
    def pool(self) -> ConnectionPool:
        """pgqueue's own connection pool (autocommit), opened on first use."""
        with self._lock:
            if self._pool is None:
                # One direct connection first: an unreachable server fails here at once
                # with libpq's own message instead of the pool retrying for 30 s.
                self._probe()
                self._pool = Pool(
                    self.dsn,
                    min_size=1,
                    max_size=self.pool_max_size,
                    kwargs={
                        "autocommit": True,
                        "application_name": application_name(self.dsn, "producer"),
                        # behind a transaction pooler, prepared statements clash
                        **({"prepare_threshold": None} if self.pooler else {}),
                    },
                    open=False,
                    name="pgqueue",
                )
                self._pool.open(wait=False)
            return self._pool

    def _probe(self) -> str:
        """Resolve the DSN, connect once and check the schema; fail fast with the cause."""
        conn, self._pooler = connect_detecting(self.dsn, "producer")
        with conn:
            self._check_schema_sync(conn)
        return self.dsn

    def _check_schema_sync(self, conn: Any) -> None:
        if self._schema_ok:
            return
        _migrate.check_state(_migrate.read_state(conn, self.schema), self.schema)
        self._schema_ok = True

    @contextlib.contextmanager
    def _connection(self, connection: Any) -> Iterator[Any]:
        """The caller's connection, or one of the pool's; the schema checked once."""
        if connection is not None:
            self._check_schema_sync(connection)
            yield connection
            return
        with self.pool().connection() as conn:
            self._check_schema_sync(conn)
            yield conn

    def migrate(self) -> tuple[str | None, str]:
        """Upgrade the schema to this pgqueue's revision (see ``pgqueue.migrate.upgrade``)."""
        result = _migrate.upgrade(self.dsn, self.schema)
        self._schema_ok = False
        return result

    def close(self) -> None:
        """Close pgqueue's own pools and its results LISTEN connection (a caller's
        connections are never touched); all reopen on next use."""
        with self._lock:
            pool, self._pool = self._pool, None
            listener, self._done_listener = self._done_listener, None
        if pool is not None:
            pool.close()
        if listener is not None:
            listener.close()

    def drain(
        self,
        queues: Iterable[str] | str | None = None,
        *,
        with_scheduled: bool = False,
        concurrency: int = 1,
        timeout: float = 60.0,
    ) -> Drained:
        """Run the due jobs of ``queues`` (default: all) here, through a real worker in
        burst mode, and return how each run ended; for tests. See ``pgqueue.drain``
        (``with_scheduled``: jobs scheduled for later run too; ``DrainTimeout`` after
        ``timeout`` seconds)."""
        from .drain import drain

        return drain(
            self, queues, with_scheduled=with_scheduled, concurrency=concurrency, timeout=timeout
        )

    async def drain_async(
        self,
        queues: Iterable[str] | str | None = None,
        *,
        with_scheduled: bool = False,
        concurrency: int = 1,
        timeout: float = 60.0,
    ) -> Drained:
        """``drain`` for asyncio code (the worker runs on the caller's loop)."""
        from .drain import drain_async

        return await drain_async(
            self, queues, with_scheduled=with_scheduled, concurrency=concurrency, timeout=timeout
        )

    def job(self, job_id: int) -> Job:
        """The ``Job`` handle for an id (``InvalidJobError`` if it is not one); nothing is
        read until you ask (``JobNotFound`` then if there is no such job)."""
        return Job(check_job_id(job_id), self)

    # -- async API -----------------------------------------------------------------------
    async def apool(self) -> AsyncConnectionPool:
        """pgqueue's own async pool (autocommit), opened on first use."""
        if self._apool is None:
            dsn = await asyncio.to_thread(self._probe)
            pool = AsyncPool(
                dsn,
                min_size=1,
                max_size=self.pool_max_size,
                kwargs={
                    "autocommit": True,
                    "application_name": application_name(dsn, "producer"),
                    **({"prepare_threshold": None} if self.pooler else {}),
                },
                open=False,
                name="pgqueue-async",
            )
            if self._apool is None:
                self._apool = pool
                await pool.open(wait=False)
        return self._apool

    async def _check_schema_async(self, conn: Any) -> None:
        if self._schema_ok:
            return
        state = await _migrate.read_state_async(conn, self.schema)
        _migrate.check_state(state, self.schema)
        self._schema_ok = True

    @contextlib.asynccontextmanager
    async def _aconnection(self, connection: Any) -> AsyncIterator[Any]:
        """``_connection`` for the async API."""
        if connection is not None:
            await self._check_schema_async(connection)
            yield connection
            return
        async with (await self.apool()).connection() as conn:
            await self._check_schema_async(conn)
            yield conn

    async def aclose(self) -> None:
        """Close the async pool (and the sync one)."""
        pool, self._apool = self._apool, None
        if pool is not None:
            await pool.close()
        self.close()
