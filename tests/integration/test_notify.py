"""NOTIFY on commit: one per queue per statement, payload the queue name, never job data."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from pgqueue import App, JobSpec
from pgqueue.sql import channel_for

Conn = psycopg.Connection[Any]

#: How long to wait to be confident that a notification did NOT come. Delivery on one
#: machine takes well under a millisecond; a positive wait below uses a far longer deadline.
QUIET = 0.3
ARRIVE = 10.0


@pytest.fixture
def listener(pg_dsn: str, schema: str) -> Iterator[Conn]:
    """An autocommit connection LISTENing on the schema's channel."""
    with psycopg.connect(pg_dsn, autocommit=True) as listen_conn:
        listen_conn.execute(f'LISTEN "{channel_for(schema)}"')
        yield listen_conn


def received(listener: Conn, *, expect: int | None = None) -> list[tuple[str, str]]:
    """(channel, payload) of notifications: ``expect`` of them within ARRIVE seconds, then
    anything more within QUIET; with ``expect`` None, whatever comes within QUIET."""
    got: list[tuple[str, str]] = []
    if expect:
        got += [
            (n.channel, n.payload) for n in listener.notifies(timeout=ARRIVE, stop_after=expect)
        ]
    got += [(n.channel, n.payload) for n in listener.notifies(timeout=QUIET)]
    return got


def test_notification_after_commit_only(app: App, listener: Conn, pg_dsn: str, schema: str) -> None:
    channel = channel_for(schema)
    secret = "s3cret-token-42"
    app.strict_tasks = False
    with psycopg.connect(pg_dsn) as producer_conn:
        app.enqueue(
            "send_email", [secret], {"password": secret}, queue="emails", connection=producer_conn
        )
        assert received(listener) == []  # nothing before commit
        producer_conn.commit()
    got = received(listener, expect=1)
    assert got == [(channel, "emails")]
    assert secret not in got[0][1]


def test_no_notification_on_rollback(app: App, listener: Conn, pg_dsn: str) -> None:
    app.strict_tasks = False
    with psycopg.connect(pg_dsn) as producer_conn:
        app.enqueue("t", [1], queue="emails", connection=producer_conn)
        app.enqueue_many([JobSpec("t", queue="other")], connection=producer_conn)
        producer_conn.rollback()
    assert received(listener) == []


def test_pool_enqueue_notifies(app: App, listener: Conn, schema: str) -> None:
    app.strict_tasks = False
    app.enqueue("t", queue="q1")
    assert received(listener, expect=1) == [(channel_for(schema), "q1")]


def test_enqueue_many_two_queues_one_notification_each(
    app: App, listener: Conn, schema: str, conn: Conn
) -> None:
    app.strict_tasks = False
    specs = [JobSpec("t", [i], queue="alpha" if i % 2 else "beta") for i in range(50)]
    ids = app.enqueue_many(specs)
    assert len(ids) == 50
    got = received(listener, expect=2)
    assert sorted(got) == [(channel_for(schema), "alpha"), (channel_for(schema), "beta")]


def test_one_notification_per_queue_per_statement(
    app: App, listener: Conn, pg_dsn: str, schema: str
) -> None:
    # PostgreSQL folds identical notifications within one transaction, so use autocommit:
    # each statement is its own transaction and must send exactly one per queue.
    app.strict_tasks = False
    app.enqueue_many([JobSpec("t", queue="alpha") for _ in range(20)])
    app.enqueue_many([JobSpec("t", queue="alpha") for _ in range(20)])
    got = received(listener, expect=2)
    assert got == [(channel_for(schema), "alpha")] * 2


def test_sql_function_notifies_on_commit(listener: Conn, pg_dsn: str, schema: str) -> None:
    with psycopg.connect(pg_dsn) as producer_conn:
        producer_conn.execute(f'SELECT "{schema}".enqueue(%s, queue => %s)', ("t", "sqlq"))
        assert received(listener) == []
        producer_conn.commit()
    assert received(listener, expect=1) == [(channel_for(schema), "sqlq")]


def test_other_schema_channel_is_separate(
    app: App, pg_dsn: str, schema: str, unmigrated_schema: str
) -> None:
    from pgqueue.migrate import upgrade

    upgrade(pg_dsn, unmigrated_schema)
    with psycopg.connect(pg_dsn, autocommit=True) as other_listener:
        other_listener.execute(f'LISTEN "{channel_for(unmigrated_schema)}"')
        app.strict_tasks = False
        app.enqueue("t", queue="mine")
        assert received(other_listener) == []
