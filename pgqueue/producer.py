"""Writing jobs: on pgqueue's own pool, or inside the caller's transaction.

A caller's connection may be a psycopg ``Connection``/``AsyncConnection`` or a
SQLAlchemy ``Connection``/``Session`` (``AsyncConnection``/``AsyncSession`` for the async
API). The job is then written in that transaction and exists only if it commits;
pgqueue never commits or rolls back a caller's transaction. Without one, pgqueue's
pool runs the statement in autocommit and it is committed when the call returns.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .errors import ConfigurationError, InvalidJobError


def _kind(conn: object) -> str:
    module = type(conn).__module__
    if module.startswith("psycopg"):
        import psycopg

        if isinstance(conn, psycopg.AsyncConnection):
            return "psycopg-async"
        if isinstance(conn, psycopg.Connection):
            return "psycopg"
    if module.startswith("sqlalchemy"):
        from sqlalchemy.engine import Connection
        from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
        from sqlalchemy.orm import Session

        if isinstance(conn, Connection):
            return "sa"
        if isinstance(conn, Session):
            return "sa-session"
        if isinstance(conn, AsyncConnection):
            return "sa-async"
        if isinstance(conn, AsyncSession):
            return "sa-async-session"
    raise ConfigurationError(
        f"connection must be a psycopg Connection/AsyncConnection or a SQLAlchemy "
        f"Connection/Session, got {type(conn).__name__}"
    )


def run_sync(conn: Any, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Run one statement on a caller's sync connection; return all rows (maybe none)."""
    kind = _kind(conn)
    if kind == "psycopg":
        cur = conn.execute(sql, params)
        return list(cur.fetchall()) if cur.description else []
    if kind in ("sa", "sa-session"):
        sa_conn = conn if kind == "sa" else conn.connection()
        result = sa_conn.exec_driver_sql(sql, params)
        return [tuple(r) for r in result.fetchall()] if result.returns_rows else []
    raise ConfigurationError(
        f"{type(conn).__name__} is an async connection: use the async API (enqueue_async)"
    )


async def run_async(conn: Any, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Run one statement on a caller's async connection; return all rows (maybe none)."""
    kind = _kind(conn)
    if kind == "psycopg-async":
        cur = await conn.execute(sql, params)
        return list(await cur.fetchall()) if cur.description else []
    if kind in ("sa-async", "sa-async-session"):
        sa_conn = conn if kind == "sa-async" else await conn.connection()
        result = await sa_conn.exec_driver_sql(sql, params)
        return [tuple(r) for r in result.fetchall()] if result.returns_rows else []
    raise ConfigurationError(
        f"{type(conn).__name__} is a sync connection: use the sync API (enqueue)"
    )


def batch_param(params: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The one parameter of ``job_insert_many``: every job as a JSON array of records.

    ``args``/``kwargs`` are already JSON text (from ``to_params``) and are spliced in
    as they are rather than parsed and dumped again.
    """
    parts = []
    for p in params:
        rest = {k: v for k, v in p.items() if k not in ("args", "kwargs")}
        if rest["run_at"] is not None:
            rest["run_at"] = rest["run_at"].isoformat()
        tail = json.dumps(rest, separators=(",", ":"))[1:-1]
        parts.append(f'{{"args":{p["args"]},"kwargs":{p["kwargs"]},{tail}}}')
    return {"jobs": "[" + ",".join(parts) + "]"}


def single_id(rows: list[tuple[Any, ...]]) -> int | None:
    """The id from ``job_insert``'s RETURNING, or None when a dedupe key matched."""
    return int(rows[0][0]) if rows else None


def dedupe_lookup_failed(key: str | None) -> InvalidJobError:
    """The (rare) error when a dedupe conflict's winner finished before we could read it."""
    return InvalidJobError(
        f"a job with dedupe_key {key!r} was enqueued concurrently and finished before its id "
        "could be read; enqueue again"
    )
