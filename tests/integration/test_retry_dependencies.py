"""retry_job on a job with dependencies: back to what its dependencies say."""

from __future__ import annotations

from typing import Any

import psycopg

from pgqueue import App

Conn = psycopg.Connection[Any]


def state(conn: Conn, schema: str, job_id: int) -> str:
    row = conn.execute(f'SELECT state FROM "{schema}".all_jobs WHERE id = %s', (job_id,)).fetchone()
    assert row is not None
    return str(row[0])


def test_retry_of_a_dependent_follows_its_dependencies(app: App, conn: Conn, schema: str) -> None:
    app.strict_tasks = False
    parent = app.enqueue("t.evaluate")
    child = app.enqueue("t.summarize", after=[parent])
    assert state(conn, schema, child) == "waiting"
    conn.execute(
        f"UPDATE \"{schema}\".jobs SET state = 'failed', finished_at = now() WHERE id = %s",
        (parent,),
    )
    conn.execute(f'SELECT "{schema}".resolve_dependents(ARRAY[%s]::bigint[])', (parent,))
    assert state(conn, schema, child) == "cancelled"
    # its dependency still failed: the retry is refused and nothing changes
    assert app.admin.retry([child]) == {child: False}
    assert state(conn, schema, child) == "cancelled"
    # the parent retried first: the child goes back to waiting, not straight to queued
    assert app.admin.retry([parent, child]) == {parent: True, child: True}
    assert (state(conn, schema, parent), state(conn, schema, child)) == ("queued", "waiting")
    conn.execute(
        f"UPDATE \"{schema}\".jobs SET state = 'succeeded', finished_at = now() WHERE id = %s",
        (parent,),
    )
    conn.execute(f'SELECT "{schema}".resolve_dependents(ARRAY[%s]::bigint[])', (parent,))
    assert state(conn, schema, child) == "queued"


def test_retry_after_the_dependency_was_pruned(app: App, conn: Conn, schema: str) -> None:
    app.strict_tasks = False
    parent = app.enqueue("t.evaluate")
    child = app.enqueue("t.summarize", after=[parent])
    conn.execute(
        f"UPDATE \"{schema}\".jobs SET state = 'cancelled', finished_at = now() WHERE id = ANY(%s)",
        ([parent, child],),
    )
    conn.execute(f'DELETE FROM "{schema}".jobs WHERE id = %s', (parent,))
    # a dependency that is gone no longer holds the job back (and is no error)
    assert app.admin.retry([child]) == {child: True}
    assert state(conn, schema, child) == "queued"
