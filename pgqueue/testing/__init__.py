"""Helpers for your own tests: drain, eager mode, assertions on enqueued jobs.

With pytest, installing pgqueue also installs its plugin (``pgqueue.testing.plugin``):
fixtures ``pgqueue_dsn``, ``pgqueue_schema``, ``pgqueue_app`` (your App on a throwaway,
migrated schema, dropped after the test) and ``pgqueue_eager`` (your App in eager mode,
no database). Everything here also works without pytest.

- ``app.drain()`` / ``drain(app)``: run the due jobs through a real worker, here and now,
  and get how each run ended (``pgqueue.drain``).
- ``eager(app)``: enqueue runs the handler at once, in the caller, without a database
  (``pgqueue.eager`` lists what that does not do).
- ``enqueued_jobs``, ``assert_enqueued``, ``assert_not_enqueued``: what is waiting to
  run (in eager mode: everything enqueued while it was on).
- ``use_schema(app, dsn, schema)``: point an App (your module-level one) at another
  database and schema for a while.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .. import codec
from ..db import validate_schema
from ..drain import Drained, Ran, drain, drain_async
from ..eager import Eager, EagerJob
from ..jobspec import check_queue, check_task_name, encode_arguments
from ..tasks import Task

if TYPE_CHECKING:
    from ..app import App

__all__ = [
    "Drained",
    "Eager",
    "EagerJob",
    "Ran",
    "assert_enqueued",
    "assert_not_enqueued",
    "drain",
    "drain_async",
    "eager",
    "enqueued_jobs",
    "use_schema",
]


@contextlib.contextmanager
def eager(app: App, *, propagate: bool = True) -> Iterator[Eager]:
    """Eager mode while the block runs: every enqueue on ``app`` runs the handler at once
    and writes nothing; ``job.result()`` gives its outcome. ``propagate``: a handler's
    exception comes out of the enqueue call (else it is recorded: the job is ``failed``
    and ``job.result()`` raises ``JobFailed``). Yields the ``Eager`` runner, whose
    ``jobs`` list every job enqueued meanwhile. Nestable; the previous mode comes back
    at the end."""
    before = app._eager
    runner = Eager(app, propagate=propagate)
    app._eager = runner
    try:
        yield runner
    finally:
        app._eager = before


@contextlib.contextmanager
def use_schema(app: App, dsn: str, schema: str) -> Iterator[App]:
    """Point ``app`` (its tasks stay registered) at ``dsn`` and ``schema`` while the
    block runs, then back; its pools are closed both times. For a module-level App
    that your code under test imports. Raises ``ConfigurationError`` for a bad schema
    name."""
    name = validate_schema(schema)
    saved = (app._dsn_arg, app._dsn, app.schema, app._pooler)
    app.close()
    app._apool = None  # bound to an event loop that may be gone; its connections drop
    app._dsn_arg, app._dsn, app.schema, app._pooler = dsn, None, name, None
    app._schema_ok = False
    try:
        yield app
    finally:
        app.close()
        app._apool = None
        app._dsn_arg, app._dsn, app.schema, app._pooler = saved
        app._schema_ok = False


def enqueued_jobs(
    app: App, task: Task | str | None = None, *, queue: str | None = None
) -> list[dict[str, Any]]:
    """Jobs not started yet (waiting, queued or scheduled), oldest first, as dicts: id,
    task, queue, args, kwargs (typed values decoded), state, priority, run_at,
    scheduled, max_attempts, dedupe_key, group_key, depends_on. Filtered by ``task``
    and ``queue``. In eager mode: every job enqueued while it is on (they have run),
    with their state, result and error. Raises ``InvalidJobError`` for a bad name."""
    name = _task_name(task)
    if queue is not None:
        check_queue(queue)
    if app._eager is not None:
        return [
            {
                "id": j.id,
                "task": j.task,
                "queue": j.queue,
                "args": j.args,
                "kwargs": j.kwargs,
                "state": j.state,
                "result": j.result,
                "error": j.error,
                **j.options,
            }
            for j in app._eager.jobs
            if (name is None or j.task == name) and (queue is None or j.queue == queue)
        ]
    from psycopg.rows import dict_row

    with app._connection(None) as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(app.query("job_list_pending"), {"task": name, "queue": queue})
        rows: list[dict[str, Any]] = cur.fetchall()
    for row in rows:
        row["args"], row["kwargs"] = codec.revive(row["args"]), codec.revive(row["kwargs"])
    return rows


def assert_enqueued(
    task: Task | str,
    args: Sequence[Any] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    *,
    queue: str | None = None,
    count: int | None = None,
    app: App | None = None,
) -> list[dict[str, Any]]:
    """Assert that a job of ``task`` waits to run (see ``enqueued_jobs``) with exactly
    these ``args`` and/or ``kwargs`` (compared after the JSON round trip a worker's
    arguments make: a tuple equals a list, typed values their types), in ``queue``;
    exactly ``count`` of them if given, else at least one. ``app`` is needed only when
    ``task`` is a name. Returns the matching jobs; raises ``AssertionError`` listing
    the jobs of that task there are."""
    owner, name = _owner(task, app)
    jobs = enqueued_jobs(owner, name, queue=queue)
    found = _matching(jobs, name, args, kwargs)
    if (count is None and found) or (count is not None and len(found) == count):
        return found
    want = _describe(name, args, kwargs, queue)
    times = "at least once" if count is None else f"{count} time(s)"
    raise AssertionError(
        f"expected {want} enqueued {times}, found {len(found)}; "
        f"jobs of {name!r} there are: {_listing(jobs)}"
    )


def assert_not_enqueued(
    task: Task | str,
    args: Sequence[Any] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    *,
    queue: str | None = None,
    app: App | None = None,
) -> None:
    """Assert that no job of ``task`` (with these ``args``/``kwargs``, in ``queue``, if
    given) waits to run; ``AssertionError`` listing the ones that do."""
    owner, name = _owner(task, app)
    found = _matching(enqueued_jobs(owner, name, queue=queue), name, args, kwargs)
    if found:
        raise AssertionError(
            f"expected no {_describe(name, args, kwargs, queue)} enqueued, found "
            f"{len(found)}: {_listing(found)}"
        )


def _task_name(task: Task | str | None) -> str | None:
    if task is None or isinstance(task, Task):
        return None if task is None else task.name
    return check_task_name(task)


def _owner(task: Task | str, app: App | None) -> tuple[App, str]:
    if isinstance(task, Task):
        return app or task.app, task.name
    if app is None:
        raise TypeError("give the app (app=...) when the task is given by name")
    return app, check_task_name(task)


def _matching(
    jobs: list[dict[str, Any]],
    name: str,
    args: Sequence[Any] | None,
    kwargs: Mapping[str, Any] | None,
) -> list[dict[str, Any]]:
    # The expected arguments take the same JSON round trip as the job's did.
    args_json, kwargs_json = encode_arguments(
        name, () if args is None else args, {} if kwargs is None else kwargs
    )
    want_args, want_kwargs = codec.loads(args_json), codec.loads(kwargs_json)
    return [
        job
        for job in jobs
        if (args is None or job["args"] == want_args)
        and (kwargs is None or job["kwargs"] == want_kwargs)
    ]


def _describe(
    name: str, args: Sequence[Any] | None, kwargs: Mapping[str, Any] | None, queue: str | None
) -> str:
    parts = [repr(name)]
    if args is not None:
        parts.append(f"args={list(args)!r}")
    if kwargs is not None:
        parts.append(f"kwargs={dict(kwargs)!r}")
    if queue is not None:
        parts.append(f"queue={queue!r}")
    return "a job of " + " ".join(parts)


def _listing(jobs: list[dict[str, Any]], most: int = 10) -> str:
    if not jobs:
        return "none"
    shown = "; ".join(
        f"#{j['id']} args={j['args']!r} kwargs={j['kwargs']!r} queue={j['queue']!r}"
        for j in jobs[:most]
    )
    return shown + (f"; and {len(jobs) - most} more" if len(jobs) > most else "")
