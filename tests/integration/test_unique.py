"""Unique jobs (dedupe_key, unique_for, replace) and group keys through the Python API."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest

from pgqueue import App, InvalidJobError, JobSpec

Conn = psycopg.Connection[Any]


def row(conn: Conn, schema: str, job_id: int) -> dict[str, Any]:
    cur = conn.execute(f'SELECT * FROM "{schema}".all_jobs WHERE id = %s', (job_id,))
    values = cur.fetchone()
    assert values is not None and cur.description is not None
    return dict(zip([c.name for c in cur.description], values, strict=True))


def count(conn: Conn, schema: str) -> int:
    (n,) = conn.execute(f'SELECT count(*) FROM "{schema}".all_jobs').fetchone()  # type: ignore[misc]
    return int(n)


def finish(conn: Conn, schema: str, job_id: int, seconds_ago: float = 0.0) -> None:
    """Succeeded ``seconds_ago``, moved to succeeded_jobs as a worker's completion does."""
    conn.execute(
        f"UPDATE \"{schema}\".jobs SET state = 'succeeded', "
        "finished_at = now() - make_interval(secs => %s) WHERE id = %s",
        (seconds_ago, job_id),
    )
    conn.execute(
        f'WITH m AS (DELETE FROM "{schema}".jobs WHERE id = %s RETURNING *) '
        f'INSERT INTO "{schema}".succeeded_jobs SELECT * FROM m',
        (job_id,),
    )


@pytest.fixture
def uapp(app: App) -> App:
    app.strict_tasks = False
    return app


def test_dedupe_key_is_a_noop_while_unfinished_then_free(
    uapp: App, conn: Conn, schema: str
) -> None:
    first = uapp.enqueue("t.report", kwargs={"v": 1}, dedupe_key="report:7")
    again = uapp.enqueue("t.report", kwargs={"v": 2}, dedupe_key="report:7")
    assert again == first and count(conn, schema) == 1
    assert row(conn, schema, first)["kwargs"] == {"v": 1}  # not replaced
    conn.execute(f"UPDATE \"{schema}\".jobs SET state = 'running' WHERE id = %s", (first,))
    assert uapp.enqueue("t.report", dedupe_key="report:7") == first
    finish(conn, schema, first)
    fresh = uapp.enqueue("t.report", dedupe_key="report:7")  # no window: a new job
    assert fresh != first and count(conn, schema) == 2


def test_unique_for_covers_recently_finished_jobs(uapp: App, conn: Conn, schema: str) -> None:
    first = uapp.enqueue("t.sync", dedupe_key="sync:acme", unique_for=60)
    finish(conn, schema, first, seconds_ago=30)
    assert uapp.enqueue("t.sync", dedupe_key="sync:acme", unique_for=60) == first
    again = uapp.enqueue("t.sync", dedupe_key="sync:acme", unique_for=60, replace=True)
    assert again == first  # replace looks for a recent holder the same way
    assert count(conn, schema) == 1
    # older than the window: a new job; a shorter window on the same call decides
    assert uapp.enqueue("t.sync", dedupe_key="sync:acme", unique_for=10) != first
    assert count(conn, schema) == 2


def test_unique_for_returns_the_newest_finished_holder(uapp: App, conn: Conn, schema: str) -> None:
    older = uapp.enqueue("t.sync", dedupe_key="k")
    finish(conn, schema, older, seconds_ago=20)
    newer = uapp.enqueue("t.sync", dedupe_key="k")
    finish(conn, schema, newer, seconds_ago=5)
    assert uapp.enqueue("t.sync", dedupe_key="k", unique_for=60) == newer


def test_replace_updates_a_queued_holder_but_not_a_running_one(
    uapp: App, conn: Conn, schema: str
) -> None:
    first = uapp.enqueue("t.index", kwargs={"docs": [1]}, dedupe_key="index:a")
    same = uapp.enqueue("t.index", kwargs={"docs": [1, 2]}, dedupe_key="index:a", replace=True)
    assert same == first and count(conn, schema) == 1
    assert row(conn, schema, first)["kwargs"] == {"docs": [1, 2]}
    conn.execute(f"UPDATE \"{schema}\".jobs SET state = 'running' WHERE id = %s", (first,))
    held = uapp.enqueue("t.index", kwargs={"docs": [9]}, dedupe_key="index:a", replace=True)
    assert held == first
    assert row(conn, schema, first)["kwargs"] == {"docs": [1, 2]}  # a running job keeps its


def test_concurrent_enqueues_of_one_key_make_one_job(pg_dsn: str, schema: str, conn: Conn) -> None:
    """16 connections enqueue the same key at the same moment, each in a transaction of
    its own: one row, and every caller gets its id."""
    barrier = threading.Barrier(16)
    got: list[int] = []
    errors: list[BaseException] = []
    producer = App(pg_dsn, schema=schema, strict_tasks=False)

    def enqueue() -> None:
        try:
            with psycopg.connect(pg_dsn) as c:  # a transaction of the caller's
                barrier.wait(10)
                job = producer.enqueue("t.once", dedupe_key="once", connection=c)
                c.commit()
                got.append(int(job))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=enqueue) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    producer.close()
    assert not errors, errors
    assert len(got) == 16 and len(set(got)) == 1
    assert count(conn, schema) == 1


def test_group_key_goes_in_through_every_path(uapp: App, conn: Conn, schema: str) -> None:
    one = uapp.enqueue("t.r", group_key="tenant:1")
    many = uapp.enqueue_many([JobSpec("t.r", group_key="tenant:2"), JobSpec("t.r")])
    batch = uapp.enqueue_batch("t.r", [{"i": 1}, {"i": 2}], group_key="tab\there")
    deduped = uapp.enqueue("t.r", group_key="tenant:3", dedupe_key="d")
    (sql_id,) = conn.execute(  # type: ignore[misc]
        f"SELECT \"{schema}\".enqueue('t.r', group_key => 'tenant:4')"
    ).fetchone()
    keys = {
        int(i): row(conn, schema, i)["group_key"] for i in [one, *many, *batch, deduped, sql_id]
    }
    assert list(keys.values()) == [
        "tenant:1",
        "tenant:2",
        None,
        "tab\there",
        "tab\there",
        "tenant:3",
        "tenant:4",
    ]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"unique_for": 10}, "unique_for and replace need a dedupe_key"),
        ({"replace": True}, "unique_for and replace need a dedupe_key"),
        ({"dedupe_key": "k", "unique_for": -1}, "unique_for must be a number of seconds"),
        ({"dedupe_key": "k", "unique_for": float("inf")}, "unique_for must be"),
        ({"dedupe_key": "k", "replace": "yes"}, "replace must be True or False"),
        ({"group_key": ""}, "group_key must be a non-empty string"),
        ({"group_key": 7}, "group_key must be a non-empty string"),
        ({"dedupe_key": "k", "unique_for": 5, "after": [1]}, "after= does not combine"),
    ],
)
def test_bad_unique_options_write_nothing(
    uapp: App, conn: Conn, schema: str, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidJobError, match=message):
        uapp.enqueue("t.x", **options)
    assert count(conn, schema) == 0


def test_unique_options_are_for_one_job_at_a_time(uapp: App, conn: Conn, schema: str) -> None:
    with pytest.raises(InvalidJobError, match="unique_for and replace work with enqueue"):
        uapp.enqueue_many([JobSpec("t.x"), JobSpec("t.x", dedupe_key="k", replace=True)])
    assert count(conn, schema) == 0
