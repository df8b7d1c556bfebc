"""Poison rows for tests, put in the way an attacker would: through the schema's SQL
``enqueue()`` function or a raw INSERT/UPDATE of the jobs table, whatever validation the
schema has (every CHECK constraint of jobs is dropped first, and a refused ``enqueue()``
is replaced by a raw INSERT)."""

from __future__ import annotations

from typing import Any

import psycopg

Conn = psycopg.Connection[Any]

#: args nested 10,000 levels deep (Python's decoder gives up with a RecursionError)
DEEP = "[" * 10_000 + "]" * 10_000
#: a number with more digits than Python's int() accepts (ValueError)
HUGE_INT = "[" + "9" * 5_000 + "]"


def drop_checks(conn: Conn, schema: str) -> None:
    """Drop every CHECK constraint of the schema's jobs table."""
    rows = conn.execute(
        "SELECT c.conname FROM pg_constraint AS c JOIN pg_class AS t ON t.oid = c.conrelid "
        "JOIN pg_namespace AS n ON n.oid = t.relnamespace "
        "WHERE n.nspname = %s AND t.relname = 'jobs' AND c.contype = 'c'",
        (schema,),
    ).fetchall()
    for (name,) in rows:
        conn.execute(f'ALTER TABLE "{schema}".jobs DROP CONSTRAINT "{name}"')


def insert_raw(
    conn: Conn,
    schema: str,
    task: str,
    args: str = "[]",
    kwargs: str = "{}",
    queue: str = "default",
    group_key: str | None = None,
) -> int:
    """A job row with exactly these args/kwargs (JSON text), by a raw INSERT."""
    drop_checks(conn, schema)
    row = conn.execute(
        f'INSERT INTO "{schema}".jobs (queue, task, args, kwargs, group_key) '
        "VALUES (%s, %s, %s::jsonb, %s::jsonb, %s) RETURNING id",
        (queue, task, args, kwargs, group_key),
    ).fetchone()
    assert row is not None
    return int(row[0])


def enqueue_sql(conn: Conn, schema: str, task: str, arguments: str) -> int:
    """A job through the schema's ``enqueue(task, arguments)``; if that refuses it (input
    validation), the same row by a raw INSERT."""
    drop_checks(conn, schema)
    try:
        with conn.transaction():
            row = conn.execute(
                f'SELECT "{schema}".enqueue(%s, %s::jsonb)', (task, arguments)
            ).fetchone()
        assert row is not None
        return int(row[0])
    except psycopg.Error:
        if arguments.startswith("["):
            return insert_raw(conn, schema, task, args=arguments)
        return insert_raw(conn, schema, task, kwargs=arguments)


def update_raw(conn: Conn, schema: str, job_id: int, column: str, value: str) -> None:
    """Overwrite a queued job's args or kwargs with any JSON (a raw UPDATE)."""
    assert column in ("args", "kwargs")
    drop_checks(conn, schema)
    conn.execute(f'UPDATE "{schema}".jobs SET {column} = %s::jsonb WHERE id = %s', (value, job_id))
