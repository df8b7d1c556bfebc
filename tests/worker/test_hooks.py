"""Lifecycle hooks (pgqueue/hooks.py) with a real worker in this process: around
enqueue (headers stored with the job), around each run (in the handler's thread or
task), on failure, dead letter and lease loss."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from pgqueue import App, JobSpec
from pgqueue.hooks import EnqueueInfo, Failure
from pgqueue.worker.runner import Claimed
from tests.helpers import arun, wait_until
from tests.worker.inproc import running

Conn = psycopg.Connection[Any]

CURRENT: contextvars.ContextVar[int | None] = contextvars.ContextVar("current", default=None)


def headers_of(conn: Conn, schema: str, job_id: int) -> Any:
    row = conn.execute(f'SELECT headers FROM "{schema}".all_jobs WHERE id = %s', (job_id,))
    return row.fetchone()[0]  # type: ignore[index]


def test_around_enqueue_stores_headers_on_every_path(app: App, conn: Conn, schema: str) -> None:
    seen: list[EnqueueInfo] = []
    outcomes: list[str] = []

    @app.around_enqueue
    @contextlib.contextmanager
    def stamp(info: EnqueueInfo) -> Iterator[None]:
        info.headers["traceparent"] = f"call-{len(seen)}"
        seen.append(info)
        try:
            yield
        except Exception as exc:
            outcomes.append(type(exc).__name__)
            raise
        outcomes.append("ok")

    @app.task(name="t", queue="q1")
    def t(n: int = 0) -> None: ...

    one = app.enqueue(t, kwargs={"n": 1})
    many = app.enqueue_many([JobSpec("t", kwargs={"n": 2}), JobSpec("t", dedupe_key="k")])
    batch = app.enqueue_batch(t, [{"n": 3}, {"n": 4}, {"n": 5}])
    after = app.enqueue(t, after=[int(one)])
    one_async = arun(app, app.enqueue_async(t))
    many_async = arun(app, app.enqueue_many_async([JobSpec("t"), JobSpec("t")]))
    assert [(i.task, i.queue, i.count) for i in seen] == [
        ("t", "q1", 1),
        ("t", "q1", 2),
        ("t", "q1", 3),
        ("t", "q1", 1),
        ("t", "q1", 1),
        ("t", "q1", 2),
    ]
    assert [i.job_ids for i in seen] == [
        [int(one)],
        [int(j) for j in many],
        [int(j) for j in batch],
        [int(after)],
        [int(one_async)],
        [int(j) for j in many_async],
    ]
    assert outcomes == ["ok"] * 6
    calls = [[int(one)], many, batch, [int(after)], [int(one_async)], many_async]
    for n, ids in enumerate(calls):
        for job_id in ids:
            assert headers_of(conn, schema, int(job_id)) == {"traceparent": f"call-{n}"}


def test_a_failing_enqueue_hook_writes_nothing(app: App, conn: Conn, schema: str) -> None:
    @app.task(name="t2")
    def t2() -> None: ...

    @app.around_enqueue
    def refuse(info: EnqueueInfo) -> Any:
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        app.enqueue(t2)
    assert conn.execute(f'SELECT count(*) FROM "{schema}".jobs').fetchone() == (0,)


def test_without_hooks_headers_stay_null(app: App, conn: Conn, schema: str) -> None:
    @app.task(name="plain")
    def plain() -> None: ...

    job_id = app.enqueue(plain)
    assert headers_of(conn, schema, int(job_id)) is None


def test_around_run_wraps_sync_and_async_handlers_where_they_run(app: App) -> None:
    entered: list[tuple[str, int, str]] = []
    exited: list[tuple[int, str | None]] = []
    inside: dict[str, Any] = {}

    @app.around_run
    @contextlib.contextmanager
    def around(job: Claimed) -> Iterator[None]:
        entered.append((job.task, job.attempt, threading.current_thread().name))
        token = CURRENT.set(job.id)
        try:
            yield
        except Exception as exc:
            exited.append((job.id, type(exc).__name__))
            raise
        finally:
            CURRENT.reset(token)
        exited.append((job.id, None))

    @app.task(name="sync_ok")
    def sync_ok() -> str:
        inside["sync"] = (CURRENT.get(), threading.current_thread().name)
        return "s"

    @app.task(name="async_ok")
    async def async_ok() -> str:
        await asyncio.sleep(0)
        inside["async"] = CURRENT.get()
        return "a"

    @app.task(name="boom", max_attempts=1)
    def boom() -> None:
        raise ValueError("bad")

    s, a, b = sync_ok.defer(), async_ok.defer(), boom.defer()
    with running(app):
        wait_until(lambda: len(exited) == 3, timeout=15, what="three runs wrapped")
    assert s.result(timeout=5) == "s" and a.result(timeout=5) == "a"
    assert inside["sync"][0] == int(s) and inside["sync"][1].startswith("pgqueue-job")
    assert inside["async"] == int(a)
    assert sorted(exited) == sorted([(int(s), None), (int(a), None), (int(b), "ValueError")])
    threads = {task: thread for task, _, thread in entered}
    assert threads["sync_ok"].startswith("pgqueue-job")  # the handler's own thread
    assert not threads["async_ok"].startswith("pgqueue-job")  # the loop's


def test_failure_and_dead_letter_hooks(app: App) -> None:
    failures: list[Failure] = []
    dead: list[Failure] = []
    app.on_failure(failures.append)
    app.on_dead_letter(dead.append)

    @app.on_failure
    def broken(f: Failure) -> None:
        raise RuntimeError("a broken reporter is logged and ignored")

    @app.task(name="flaky", max_attempts=2)
    def flaky() -> None:
        raise KeyError("missing")

    job = flaky.defer()
    with running(app, poll_interval=0.05):
        wait_until(lambda: len(dead) == 1, timeout=20, what="dead-lettered")
    assert [(f.job.id, f.job.attempt, f.retrying) for f in failures] == [
        (int(job), 1, True),
        (int(job), 2, False),
    ]
    assert dead[0] is failures[1]
    assert isinstance(dead[0].exception, KeyError)
    assert dead[0].error["kind"] == "error" and "missing" in dead[0].error["message"]
    assert job.state() == "failed"


def test_lease_lost_hook(app: App, conn: Conn, schema: str) -> None:
    lost: list[Claimed] = []
    app.on_lease_lost(lost.append)
    started = threading.Event()

    @app.task(name="victim", pass_context=True)
    def victim(ctx: Any) -> None:
        started.set()
        ctx.lease_lost.wait(10)

    job_id = victim.defer()
    with running(app, lease=1.5):
        wait_until(started.is_set, what="handler started")
        conn.execute(
            f'UPDATE "{schema}".jobs SET attempt = attempt + 1, worker_id = %s, '
            "lease_expires_at = now() + interval '1 hour' WHERE id = %s",
            ("someone-else", int(job_id)),
        )
        wait_until(lambda: lost, timeout=10, what="on_lease_lost called")
    assert [(j.id, j.attempt) for j in lost] == [(int(job_id), 1)]


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_several_around_run_hooks_nest_in_registration_order(app: App, kind: str) -> None:
    calls: list[str] = []

    def hook(name: str) -> Any:
        @contextlib.contextmanager
        def around(job: Claimed) -> Iterator[None]:
            calls.append(f"enter {name}")
            yield
            calls.append(f"exit {name}")

        return around

    app.around_run(hook("outer"))
    app.around_run(hook("inner"))

    @app.task(name="s")
    def s() -> None:
        calls.append("handler")

    @app.task(name="a")
    async def a() -> None:
        calls.append("handler")

    job = (s if kind == "sync" else a).defer()
    with running(app):
        job.result(timeout=15)
    assert calls == ["enter outer", "enter inner", "handler", "exit inner", "exit outer"]
