"""Enqueue against a real PostgreSQL: rows, options, dedupe, transactions, bulk, SQL."""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from pgqueue import App, InvalidJobError, JobSpec, Task, UnknownTaskError

Conn = psycopg.Connection[Any]


def count_jobs(conn: Conn, schema: str) -> int:
    row = conn.execute(f'SELECT count(*) FROM "{schema}".all_jobs').fetchone()
    assert row is not None
    return int(row[0])


def job_row(conn: Conn, schema: str, job_id: int) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(f'SELECT * FROM "{schema}".all_jobs WHERE id = %s', (job_id,)).fetchone()
    assert row is not None, f"job {job_id} is not in the table"
    return row


@pytest.fixture
def send(app: App) -> Task:
    @app.task(name="send_email", queue="emails", priority=3, max_attempts=7)
    def send_email(to: str, subject: str = "") -> None:
        return None

    return send_email


@pytest.fixture
def engine(pg_dsn: str) -> Iterator[Engine]:
    eng = create_engine(
        "postgresql+psycopg://", creator=lambda: psycopg.connect(pg_dsn), poolclass=NullPool
    )
    yield eng
    eng.dispose()


# -- the row ------------------------------------------------------------------------------


def test_enqueue_by_task_object_uses_task_defaults(
    app: App, send: Task, conn: Conn, schema: str
) -> None:
    job_id = app.enqueue(send, ["a@b.c"], {"subject": "hi"})
    row = job_row(conn, schema, job_id)
    assert row["task"] == "send_email"
    assert row["args"] == ["a@b.c"]
    assert row["kwargs"] == {"subject": "hi"}
    assert (row["queue"], row["priority"], row["max_attempts"]) == ("emails", 3, 7)
    assert (row["state"], row["attempt"], row["error_count"], row["lost_count"]) == (
        "queued",
        0,
        0,
        0,
    )
    assert row["dedupe_key"] is None and row["errors"] == [] and row["result"] is None
    assert row["run_at"] == row["created_at"]
    assert row["lease_expires_at"] is None and row["worker_id"] is None


def test_enqueue_by_name_round_trips_arguments(
    app: App, send: Task, conn: Conn, schema: str
) -> None:
    args = [1, -2.5, "ü", None, True, [1, [2]], {"nested": {"x": [None]}}]
    kwargs = {"to": "a@b.c", "list": [], "obj": {}, "big": 2**53 + 1, "text": "line\nbreak"}
    job_id = app.enqueue("send_email", args, kwargs)
    row = job_row(conn, schema, job_id)
    assert row["args"] == args
    assert row["kwargs"] == kwargs
    assert row["queue"] == "emails"  # the registered task's default, also by name


def test_enqueue_options_land_in_the_row(app: App, send: Task, conn: Conn, schema: str) -> None:
    run_at = datetime(2031, 5, 6, 7, 8, 9, 123000, tzinfo=timezone(timedelta(hours=2)))
    a = app.enqueue(
        send,
        ["x"],
        queue="other",
        priority=-32768,
        run_at=run_at,
        max_attempts=1,
        dedupe_key="key-a",
    )
    row = job_row(conn, schema, a)
    assert (row["queue"], row["priority"], row["max_attempts"], row["dedupe_key"]) == (
        "other",
        -32768,
        1,
        "key-a",
    )
    assert row["run_at"] == run_at

    b = app.enqueue(send, ["y"], delay=90.5, priority=32767)
    row = job_row(conn, schema, b)
    assert row["run_at"] - row["created_at"] == timedelta(seconds=90.5)
    assert row["priority"] == 32767


def test_defer_and_options(app: App, send: Task, conn: Conn, schema: str) -> None:
    a = send.defer("a@b.c", subject="s")
    b = send.options(queue="bulk", priority=9, dedupe_key="d").defer("b@b.c")
    ra, rb = job_row(conn, schema, a), job_row(conn, schema, b)
    assert (ra["args"], ra["kwargs"], ra["queue"]) == (["a@b.c"], {"subject": "s"}, "emails")
    assert (rb["args"], rb["queue"], rb["priority"], rb["dedupe_key"]) == (
        ["b@b.c"],
        "bulk",
        9,
        "d",
    )


def test_ids_increase(app: App, send: Task) -> None:
    ids = [app.enqueue(send, [str(i)]) for i in range(5)]
    assert ids == sorted(ids) and len(set(ids)) == 5


# -- dedupe ---------------------------------------------------------------------------------


def test_dedupe_returns_the_same_id_while_unfinished(
    app: App, send: Task, conn: Conn, schema: str
) -> None:
    first = app.enqueue(send, ["a"], dedupe_key="account-7")
    assert app.enqueue(send, ["b"], dedupe_key="account-7") == first
    assert app.enqueue("send_email", ["c"], dedupe_key="account-7", queue="x") == first
    other = app.enqueue(send, ["d"], dedupe_key="account-8")
    assert other != first
    assert count_jobs(conn, schema) == 2
    assert job_row(conn, schema, first)["args"] == ["a"]  # the first one wins

    conn.execute(f'UPDATE "{schema}".jobs SET state = %s WHERE id = %s', ("running", first))
    assert app.enqueue(send, ["e"], dedupe_key="account-7") == first

    conn.execute(f'UPDATE "{schema}".jobs SET state = %s WHERE id = %s', ("succeeded", first))
    again = app.enqueue(send, ["f"], dedupe_key="account-7")
    assert again not in (first, other)
    assert count_jobs(conn, schema) == 3


def test_enqueue_many_skips_held_dedupe_keys(app: App, send: Task, conn: Conn, schema: str) -> None:
    held = app.enqueue(send, ["held"], dedupe_key="k1")
    ids = app.enqueue_many(
        [
            JobSpec("send_email", ["new"], dedupe_key="k2"),
            JobSpec("send_email", ["dup"], dedupe_key="k1"),
            JobSpec("send_email", ["plain"]),
        ]
    )
    assert len(ids) == 2 and held not in ids
    assert [job_row(conn, schema, i)["args"] for i in ids] == [["new"], ["plain"]]
    assert count_jobs(conn, schema) == 3


@pytest.mark.parametrize("how", ["pool", "own-connections"])
def test_concurrent_dedupe_creates_one_job(
    app: App, send: Task, conn: Conn, schema: str, pg_dsn: str, how: str
) -> None:
    n = 8
    barrier = threading.Barrier(n, timeout=30)
    results: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        try:
            if how == "pool":
                barrier.wait()
                job_id = app.enqueue(send, [i], dedupe_key="only-one")
            else:
                with psycopg.connect(pg_dsn) as own:
                    own.execute("SELECT 1")  # connected and in a transaction before the race
                    barrier.wait()
                    job_id = app.enqueue(send, [i], dedupe_key="only-one", connection=own)
                    own.commit()
            with lock:
                results.append(job_id)
        except BaseException as exc:  # collected and re-raised in the main thread
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert len(results) == n
    assert len(set(results)) == 1
    assert count_jobs(conn, schema) == 1


# -- bad input writes nothing -----------------------------------------------------------------


def test_unknown_task_with_strict_app_raises_and_writes_nothing(
    app: App, send: Task, conn: Conn, schema: str
) -> None:
    assert app.strict_tasks
    with pytest.raises(UnknownTaskError, match="no_such_task") as info:
        app.enqueue("no_such_task", [1])
    assert "send_email" in str(info.value)  # lists what is registered
    with pytest.raises(UnknownTaskError):
        app.enqueue_many([JobSpec("send_email"), JobSpec("no_such_task")])
    assert count_jobs(conn, schema) == 0


def test_unknown_task_allowed_when_not_strict(pg_dsn: str, schema: str, conn: Conn) -> None:
    producer = App(pg_dsn, schema=schema, strict_tasks=False)
    try:
        job_id = producer.enqueue("defined.elsewhere", kwargs={"x": 1})
    finally:
        producer.close()
    row = job_row(conn, schema, job_id)
    assert (row["task"], row["queue"], row["priority"], row["max_attempts"]) == (
        "defined.elsewhere",
        "default",
        0,
        20,
    )


@pytest.mark.parametrize(
    ("args", "kwargs", "named"),
    [
        ([math.nan], {}, "argument 0"),
        ([], {"when": complex(1, 2)}, "argument 'when'"),
        ([1, {1, 2}], {}, "argument 1"),
        ([], {"m": {3: "x"}}, "argument 'm'"),
    ],
)
def test_bad_arguments_raise_and_write_nothing(
    app: App,
    send: Task,
    conn: Conn,
    schema: str,
    args: list[Any],
    kwargs: dict[str, Any],
    named: str,
) -> None:
    with pytest.raises(InvalidJobError, match=named):
        app.enqueue(send, args, kwargs)
    with pytest.raises(InvalidJobError, match=named):
        send.defer(*args, **kwargs)
    assert count_jobs(conn, schema) == 0


@pytest.mark.parametrize(
    "options",
    [
        {"queue": "no spaces"},
        {"priority": 40000},
        {"delay": -1},
        {"run_at": datetime(2030, 1, 1)},
        {"max_attempts": 0},
    ],
)
def test_bad_options_raise_and_write_nothing(
    app: App, send: Task, conn: Conn, schema: str, options: dict[str, Any]
) -> None:
    with pytest.raises(InvalidJobError):
        app.enqueue(send, ["a"], **options)
    assert count_jobs(conn, schema) == 0


# -- transactional enqueue ---------------------------------------------------------------------


def test_psycopg_connection_rollback_and_commit(
    app: App, send: Task, conn: Conn, schema: str, pg_dsn: str
) -> None:
    with psycopg.connect(pg_dsn) as own:
        gone = app.enqueue(send, ["rolled back"], connection=own)
        assert count_jobs(conn, schema) == 0  # not visible before commit
        own.rollback()
        kept = app.enqueue(send, ["committed"], connection=own)
        own.execute("SELECT 1")  # the caller's transaction is still open and usable
        assert count_jobs(conn, schema) == 0
        own.commit()
    assert count_jobs(conn, schema) == 1
    assert job_row(conn, schema, kept)["args"] == ["committed"]
    gone_row = conn.execute(f'SELECT 1 FROM "{schema}".all_jobs WHERE id = %s', (gone,))
    assert gone_row.fetchone() is None


def test_psycopg_transaction_block(
    app: App, send: Task, conn: Conn, schema: str, pg_dsn: str
) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as own:
        with pytest.raises(RuntimeError), own.transaction():
            app.enqueue(send, ["x"], connection=own)
            raise RuntimeError("the caller's own failure")
        assert count_jobs(conn, schema) == 0
        with own.transaction():
            many = app.enqueue_many([send.spec(str(i)) for i in range(3)], connection=own)
        assert count_jobs(conn, schema) == 3
    assert len(many) == 3


def test_sqlalchemy_connection(
    app: App, send: Task, conn: Conn, schema: str, engine: Engine
) -> None:
    with engine.connect() as sa_conn:
        app.enqueue(send, ["rolled back"], connection=sa_conn)
        app.enqueue_many([send.spec("rb2")], connection=sa_conn)
        assert count_jobs(conn, schema) == 0
        sa_conn.rollback()
    assert count_jobs(conn, schema) == 0
    with engine.begin() as sa_conn:
        kept = app.enqueue(send, ["committed"], connection=sa_conn)
        assert count_jobs(conn, schema) == 0
    assert count_jobs(conn, schema) == 1
    assert job_row(conn, schema, kept)["args"] == ["committed"]


def test_sqlalchemy_session(app: App, send: Task, conn: Conn, schema: str, engine: Engine) -> None:
    with Session(engine) as session:
        app.enqueue(send, ["rolled back"], connection=session)
        assert count_jobs(conn, schema) == 0
        session.rollback()
    assert count_jobs(conn, schema) == 0
    with Session(engine) as session, session.begin():
        kept = app.enqueue(send, ["committed"], connection=session)
        many = app.enqueue_many([send.spec("m1"), send.spec("m2")], connection=session)
        assert count_jobs(conn, schema) == 0
    assert count_jobs(conn, schema) == 3
    assert [job_row(conn, schema, i)["args"] for i in [kept, *many]] == [
        ["committed"],
        ["m1"],
        ["m2"],
    ]


def test_async_psycopg_connection(
    app: App, send: Task, conn: Conn, schema: str, pg_dsn: str
) -> None:
    async def main() -> int:
        async with await psycopg.AsyncConnection.connect(pg_dsn) as aconn:
            await app.enqueue_async(send, ["rolled back"], connection=aconn)
            await app.enqueue_many_async([send.spec("rb2")], connection=aconn)
            assert count_jobs(conn, schema) == 0
            await aconn.rollback()
            kept = await app.enqueue_async(send, ["committed"], connection=aconn)
            assert count_jobs(conn, schema) == 0
            await aconn.commit()
        return kept

    kept = asyncio.run(main())
    assert count_jobs(conn, schema) == 1
    assert job_row(conn, schema, kept)["args"] == ["committed"]


def test_async_sqlalchemy_session(
    app: App, send: Task, conn: Conn, schema: str, pg_dsn: str
) -> None:
    async def main() -> int:
        aengine = create_async_engine(
            "postgresql+psycopg://",
            poolclass=NullPool,
            async_creator=lambda: psycopg.AsyncConnection.connect(pg_dsn),
        )
        try:
            async with AsyncSession(aengine) as session:
                await app.enqueue_async(send, ["rolled back"], connection=session)
                await session.rollback()
            assert count_jobs(conn, schema) == 0
            async with AsyncSession(aengine) as session, session.begin():
                kept = await app.enqueue_async(send, ["committed"], connection=session)
                assert count_jobs(conn, schema) == 0
            async with aengine.connect() as aconn:
                await app.enqueue_async(send, ["rolled back too"], connection=aconn)
                await aconn.rollback()
        finally:
            await aengine.dispose()
        return kept

    kept = asyncio.run(main())
    assert count_jobs(conn, schema) == 1
    assert job_row(conn, schema, kept)["args"] == ["committed"]


def test_enqueue_async_on_the_pool(app: App, send: Task, conn: Conn, schema: str) -> None:
    async def main() -> tuple[int, int, list[int]]:
        try:
            a = await app.enqueue_async(send, ["a"], {"subject": "s"})
            b = await send.defer_async("b")
            many = await app.enqueue_many_async([send.spec("c"), send.spec("d")])
            return a, b, many
        finally:
            await app.aclose()

    a, b, many = asyncio.run(main())
    assert count_jobs(conn, schema) == 4  # committed before returning
    assert job_row(conn, schema, a)["kwargs"] == {"subject": "s"}
    assert [job_row(conn, schema, i)["args"] for i in [b, *many]] == [["b"], ["c"], ["d"]]


def test_wrong_connection_kinds_are_rejected(
    app: App, send: Task, conn: Conn, schema: str, pg_dsn: str
) -> None:
    from pgqueue import ConfigurationError

    with pytest.raises(ConfigurationError, match="Connection"):
        app.enqueue(send, ["x"], connection=object())

    async def use_sync_conn_in_async_api() -> None:
        with psycopg.connect(pg_dsn) as sync_conn:
            await app.enqueue_async(send, ["x"], connection=sync_conn)

    with pytest.raises(ConfigurationError, match="sync"):
        asyncio.run(use_sync_conn_in_async_api())
    assert count_jobs(conn, schema) == 0


# -- bulk --------------------------------------------------------------------------------------


def test_enqueue_many_10000_in_input_order(app: App, send: Task, conn: Conn, schema: str) -> None:
    specs = [
        JobSpec(
            "send_email",
            [i],
            {"n": str(i)},
            queue=f"q{i % 3}",
            priority=i % 5,
            dedupe_key=None if i % 2 else f"k{i}",
        )
        for i in range(10_000)
    ]
    ids = app.enqueue_many(specs)
    assert len(ids) == 10_000 and len(set(ids)) == 10_000
    assert count_jobs(conn, schema) == 10_000
    rows = conn.execute(
        f"SELECT id, (args->>0)::int, kwargs->>'n', queue, priority, dedupe_key, max_attempts "
        f'FROM "{schema}".all_jobs ORDER BY id'
    ).fetchall()
    by_id = {r[0]: r[1:] for r in rows}
    for i, job_id in enumerate(ids):
        assert by_id[job_id] == (i, str(i), f"q{i % 3}", i % 5, None if i % 2 else f"k{i}", 7), (
            f"job {i}"
        )


def test_enqueue_many_with_run_at_and_delay(app: App, send: Task, conn: Conn, schema: str) -> None:
    when = datetime(2032, 1, 1, tzinfo=UTC)
    ids = app.enqueue_many(
        iter([JobSpec("send_email", run_at=when), JobSpec("send_email", delay=30)])
    )
    a, b = job_row(conn, schema, ids[0]), job_row(conn, schema, ids[1])
    assert a["run_at"] == when
    assert b["run_at"] - b["created_at"] == timedelta(seconds=30)
    assert app.enqueue_many([]) == []


def test_a_bad_job_in_a_batch_writes_none(app: App, send: Task, conn: Conn, schema: str) -> None:
    good = [send.spec(str(i)) for i in range(500)]
    with pytest.raises(InvalidJobError, match="argument 0"):
        app.enqueue_many([*good, JobSpec("send_email", [math.nan])])
    with pytest.raises(InvalidJobError, match="queue"):
        app.enqueue_many([*good, JobSpec("send_email", queue="bad queue")])
    assert count_jobs(conn, schema) == 0


# -- the SQL function ---------------------------------------------------------------------------


def test_sql_enqueue_function(conn: Conn, schema: str) -> None:
    def call(sql: str, *params: Any) -> int:
        row = conn.execute(f'SELECT "{schema}".enqueue({sql})', params).fetchone()
        assert row is not None and row[0] is not None
        return int(row[0])

    obj = call("'send_email', '{\"to\": \"a@b.c\"}'")
    row = job_row(conn, schema, obj)
    assert (row["task"], row["args"], row["kwargs"], row["queue"], row["state"]) == (
        "send_email",
        [],
        {"to": "a@b.c"},
        "default",
        "queued",
    )

    arr = call("'reports.build', '[2026, 11]', queue => 'reports', priority => 4")
    row = job_row(conn, schema, arr)
    assert (row["args"], row["kwargs"], row["queue"], row["priority"]) == (
        [2026, 11],
        {},
        "reports",
        4,
    )

    first = call("'sync', '{}', dedupe_key => %s", "acct-1")
    assert call("'sync', '{\"again\": true}', dedupe_key => %s", "acct-1") == first
    assert job_row(conn, schema, first)["dedupe_key"] == "acct-1"

    when = datetime(2033, 3, 3, tzinfo=UTC)
    later = call("'later', '[]', run_at => %s, max_attempts => 2", when)
    row = job_row(conn, schema, later)
    assert (row["run_at"], row["max_attempts"]) == (when, 2)
    assert count_jobs(conn, schema) == 4


@pytest.mark.parametrize("scalar", ["1", '"text"', "true", "null"])
def test_sql_enqueue_rejects_scalar(conn: Conn, schema: str, scalar: str) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=r"object .* or array"):
        conn.execute(f'SELECT "{schema}".enqueue(%s, %s::jsonb)', ("t", scalar))
    assert count_jobs(conn, schema) == 0


def test_sql_enqueue_rejects_bad_names(conn: Conn, schema: str) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="invalid task name"):
        conn.execute(f'SELECT "{schema}".enqueue(%s)', ("not a task name",))
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="invalid queue name"):
        conn.execute(f'SELECT "{schema}".enqueue(%s, queue => %s)', ("t", "bad queue"))
    assert count_jobs(conn, schema) == 0


def test_sql_enqueue_in_a_rolled_back_transaction(conn: Conn, schema: str, pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as own:
        own.execute(f'SELECT "{schema}".enqueue(%s)', ("t",))
        own.rollback()
    assert count_jobs(conn, schema) == 0
