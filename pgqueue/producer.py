"""Writing jobs: on pgqueue's own pool, or inside the caller's transaction.

A caller's connection may be a psycopg ``Connection``/``AsyncConnection`` or a
SQLAlchemy ``Connection``/``Session`` (``AsyncConnection``/``AsyncSession`` for the async
API). The job is then written in that transaction and exists only if it commits;
pgqueue never commits or rolls back a caller's transaction. Without one, pgqueue's
pool runs the statement in autocommit and it is committed when the call returns.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from typing import Any

import psycopg

from .errors import ConfigurationError, InvalidJobError
from .sql import query

log = logging.getLogger("pgqueue.producer")


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

    ``args``/``kwargs`` (and ``headers``) are already JSON text (from ``to_params``
    and the enqueue hooks) and are spliced in as they are rather than parsed and dumped
    again.
    """
    parts = []
    for p in params:
        rest = {k: v for k, v in p.items() if k not in ("args", "kwargs", "headers")}
        if rest["run_at"] is not None:
            rest["run_at"] = rest["run_at"].isoformat()
        tail = json.dumps(rest, separators=(",", ":"))[1:-1]
        headers = p.get("headers") or "null"
        parts.append(
            f'{{"args":{p["args"]},"kwargs":{p["kwargs"]},"headers":{headers},{tail}}}'
        )
    return {"jobs": "[" + ",".join(parts) + "]"}


def _psycopg_of(conn: Any) -> Any:
    """The psycopg 3 connection behind a caller's connection (same transaction), or None."""
    import psycopg

    kind = _kind(conn)
    if kind == "psycopg":
        return conn
    if kind in ("sa", "sa-session"):
        sa_conn = conn if kind == "sa" else conn.connection()
        if not sa_conn.in_transaction():
            # SQLAlchemy must know a transaction is open, or its commit() is a no-op and
            # the pool's reset rolls back what we write on the raw connection.
            sa_conn.begin()
        raw = sa_conn.connection.driver_connection
        return raw if isinstance(raw, psycopg.Connection) else None
    return None


def _copyable(params: Sequence[dict[str, Any]]) -> bool:
    """COPY fits when no job has a dedupe key (no ON CONFLICT in COPY) or dependencies, and
    all are due now."""
    return all(
        p["dedupe_key"] is None and p["run_at"] is None and not p["delay"] and not p["depends_on"]
        for p in params
    )


def _esc(json_text: str) -> str:
    """JSON text as a COPY text-format field. JSON never holds a raw tab or newline (it
    escapes them), so the backslash is the only character COPY needs escaped."""
    return json_text.replace("\\", "\\\\") if "\\" in json_text else json_text


def _group(params: dict[str, Any]) -> str:
    """The group_key as a COPY text field: \\N for none (NULL), escaped otherwise."""
    key: str | None = params["group_key"]
    if key is None:
        return "\\N"
    return key.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _headers(params: dict[str, Any]) -> str:
    """The headers (JSON text or None) as a COPY text field."""
    headers: str | None = params.get("headers")
    return "\\N" if headers is None else _esc(headers)


def _copy_text(ids: list[int], params: Sequence[dict[str, Any]]) -> str:
    """COPY text-format lines for the batch, built directly (no per-row adapter calls).
    Queue and task names are validated identifiers and the numbers are numbers."""
    return "".join(
        [
            f"{i}\t{p['queue']}\t{p['task']}\t{_esc(p['args'])}\t{_esc(p['kwargs'])}\t"
            f"{p['priority']}\t{p['max_attempts']}\t{_group(p)}\t{_headers(p)}\n"
            for i, p in zip(ids, params, strict=True)
        ]
    )


def insert_uniform(
    conn: Any, schema: str, common: dict[str, Any], encoded: list[tuple[str, str]]
) -> list[int]:
    """Write a batch of jobs that share task, queue, priority and max_attempts (all due
    now, no dedupe keys): COPY on psycopg 3, the jsonb path elsewhere. Ids in order."""
    raw = _psycopg_of(conn)
    if raw is None:
        params = [{**common, "args": a, "kwargs": k} for a, k in encoded]
        return insert_many(conn, schema, params)
    head = f"{common['queue']}\t{common['task']}\t"
    tail = (
        f"\t{common['priority']}\t{common['max_attempts']}\t{_group(common)}"
        f"\t{_headers(common)}\n"
    )
    with raw.cursor() as cur:
        cur.execute(query(schema, "job_id_reserve"), {"n": len(encoded)})
        ids: list[int] = cur.fetchone()[0]
        text = "".join(
            [
                f"{i}\t{head}{_esc(a)}\t{_esc(k)}{tail}"
                for i, (a, k) in zip(ids, encoded, strict=True)
            ]
        )
        with cur.copy(query(schema, "job_copy")) as copy:
            copy.write(text)
    return ids


def _insert_query(params: dict[str, Any]) -> str:
    """job_insert, or with a dedupe key job_insert_deduped / job_insert_replacing."""
    if params["dedupe_key"] is None:
        return "job_insert"
    return "job_insert_replacing" if params["replace"] else "job_insert_deduped"


def insert_one(conn: Any, schema: str, params: dict[str, Any], *, own: bool = False) -> int:
    """Write one job; its id (or the id of the unfinished job holding its dedupe key).

    ``own``: ``conn`` is pgqueue's autocommit connection, not a caller's transaction
    (matters for jobs with dependencies, see ``insert_after``).
    """
    if params["depends_on"]:
        return insert_after(conn, schema, [params], own=own)[0]
    job_id = single_id(run_sync(conn, query(schema, _insert_query(params)), params))
    if job_id is None:
        rows = run_sync(conn, query(schema, "job_find_unfinished_by_dedupe_key"), params)
        job_id = single_id(rows)
        if job_id is None:
            raise dedupe_lookup_failed(params["dedupe_key"])
    return job_id


async def insert_one_async(
    conn: Any, schema: str, params: dict[str, Any], *, own: bool = False
) -> int:
    """``insert_one`` on an async connection."""
    if params["depends_on"]:
        return (await insert_after_async(conn, schema, [params], own=own))[0]
    job_id = single_id(await run_async(conn, query(schema, _insert_query(params)), params))
    if job_id is None:
        rows = await run_async(conn, query(schema, "job_find_unfinished_by_dedupe_key"), params)
        job_id = single_id(rows)
        if job_id is None:
            raise dedupe_lookup_failed(params["dedupe_key"])
    return job_id


def insert_many(
    conn: Any, schema: str, params: Sequence[dict[str, Any]], *, own: bool = False
) -> list[int]:
    """Write many jobs; their ids in input order (dedupe-skipped ones left out).

    COPY (with ids reserved from the sequence first) when every job is due now and has
    no dedupe key and the connection is psycopg 3; else one INSERT ... SELECT of a jsonb
    array (``insert_after`` if a job has dependencies). One job failing a constraint
    fails the whole batch: nothing is written.
    """
    if any(p["depends_on"] for p in params):
        return insert_after(conn, schema, params, own=own)
    raw = _psycopg_of(conn) if _copyable(params) else None
    if raw is None:
        return [
            int(r[0]) for r in run_sync(conn, query(schema, "job_insert_many"), batch_param(params))
        ]
    with raw.cursor() as cur:
        cur.execute(query(schema, "job_id_reserve"), {"n": len(params)})
        ids: list[int] = cur.fetchone()[0]
        with cur.copy(query(schema, "job_copy")) as copy:
            copy.write(_copy_text(ids, params))
    return ids


async def insert_many_async(
    conn: Any, schema: str, params: Sequence[dict[str, Any]], *, own: bool = False
) -> list[int]:
    """``insert_many`` on an async connection (COPY on a psycopg ``AsyncConnection``)."""
    if any(p["depends_on"] for p in params):
        return await insert_after_async(conn, schema, params, own=own)
    if not (_copyable(params) and isinstance(conn, psycopg.AsyncConnection)):
        rows = await run_async(conn, query(schema, "job_insert_many"), batch_param(params))
        return [int(r[0]) for r in rows]
    async with conn.cursor() as cur:
        await cur.execute(query(schema, "job_id_reserve"), {"n": len(params)})
        row = await cur.fetchone()
        assert row is not None  # an aggregate always returns its row
        ids: list[int] = row[0]
        async with cur.copy(query(schema, "job_copy")) as copy:
            await copy.write(_copy_text(ids, params))
    return ids


def single_id(rows: list[tuple[Any, ...]]) -> int | None:
    """The id from ``job_insert``'s RETURNING, or None when a dedupe key matched."""
    return int(rows[0][0]) if rows else None


def dedupe_lookup_failed(key: str | None) -> InvalidJobError:
    """The (rare) error when a dedupe conflict's winner finished before we could read it."""
    return InvalidJobError(
        f"a job with dedupe_key {key!r} was enqueued concurrently and finished before its id "
        "could be read; enqueue again"
    )


# -- jobs with dependencies (after=) ---------------------------------------------------------


def _after_statement(schema: str, params: Sequence[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    return query(schema, "job_insert_many_after"), batch_param(params)


def _dependency_ids(params: Sequence[dict[str, Any]]) -> list[int]:
    return sorted({d for p in params for d in p["depends_on"] or ()})


def _fresh_waiting(rows: list[tuple[Any, ...]]) -> dict[str, Any] | None:
    """The parameters of ``job_resolve_new`` if an inserted job is waiting, else None."""
    waiting = [int(r[0]) for r in rows if r[1] == "waiting"]
    return {"ids": waiting} if waiting else None


_MISSING_ID = re.compile(r"does not exist: (\d+)")


def missing_dependency(job_id: int | str | None) -> InvalidJobError:
    """The error for ``after=`` naming a job that is not there (nothing is written)."""
    return InvalidJobError(
        f"after= names job {job_id if job_id is not None else '?'}, which does not exist "
        "(never enqueued, or pruned after it finished); nothing was written"
    )


def _translate(exc: Exception) -> InvalidJobError | None:
    """``InvalidJobError`` for dependency_state()'s foreign_key_violation (raised by
    psycopg, or wrapped by SQLAlchemy as ``.orig``), else None."""
    cause = getattr(exc, "orig", None) or exc
    if not isinstance(cause, psycopg.errors.ForeignKeyViolation):
        return None
    found = _MISSING_ID.search(cause.diag.message_primary or str(cause))
    return missing_dependency(found.group(1) if found else None)


def _resolve_failed(exc: Exception) -> None:
    log.warning(
        "jobs enqueued with after= were written, but checking whether their dependencies "
        "finished meanwhile failed (the maintenance sweep will): %s",
        str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
    )


def insert_after(
    conn: Any, schema: str, params: Sequence[dict[str, Any]], *, own: bool = False
) -> list[int]:
    """Write jobs of which some have dependencies; their ids in input order.

    Each starts waiting, queued or cancelled as ``dependency_state()`` decides, in the
    INSERT itself. A dependency that does not exist raises ``InvalidJobError`` naming it
    and nothing is written; on a caller's connection (``own`` False) that is checked
    first, so the caller's transaction stays usable. On pgqueue's own autocommit
    connection (``own``), after the commit, a job still waiting whose dependencies have
    all finished meanwhile is resolved at once; in a caller's transaction that is left to
    the workers' maintenance sweep (seconds later). A failure of that check is logged,
    never raised: the jobs are already committed.
    """
    if not own:
        missing = run_sync(
            conn, query(schema, "job_missing_dependencies"), {"ids": _dependency_ids(params)}
        )
        if missing:
            raise missing_dependency(int(missing[0][0]))
    sql, values = _after_statement(schema, params)
    try:
        rows = run_sync(conn, sql, values)
    except Exception as exc:
        translated = _translate(exc)
        if translated is None:
            raise
        raise translated from None
    ids = [int(r[0]) for r in rows]
    if len(params) == 1 and not ids:  # a dedupe key held by an unfinished job
        found = single_id(
            run_sync(conn, query(schema, "job_find_unfinished_by_dedupe_key"), params[0])
        )
        if found is None:
            raise dedupe_lookup_failed(params[0]["dedupe_key"])
        return [found]
    check = _fresh_waiting(rows) if own else None
    if check is not None:
        try:
            run_sync(conn, query(schema, "job_resolve_new"), check)
        except psycopg.Error as exc:
            _resolve_failed(exc)
    return ids


async def insert_after_async(
    conn: Any, schema: str, params: Sequence[dict[str, Any]], *, own: bool = False
) -> list[int]:
    """``insert_after`` on an async connection."""
    if not own:
        missing = await run_async(
            conn, query(schema, "job_missing_dependencies"), {"ids": _dependency_ids(params)}
        )
        if missing:
            raise missing_dependency(int(missing[0][0]))
    sql, values = _after_statement(schema, params)
    try:
        rows = await run_async(conn, sql, values)
    except Exception as exc:
        translated = _translate(exc)
        if translated is None:
            raise
        raise translated from None
    ids = [int(r[0]) for r in rows]
    if len(params) == 1 and not ids:
        found = single_id(
            await run_async(conn, query(schema, "job_find_unfinished_by_dedupe_key"), params[0])
        )
        if found is None:
            raise dedupe_lookup_failed(params[0]["dedupe_key"])
        return [found]
    check = _fresh_waiting(rows) if own else None
    if check is not None:
        try:
            await run_async(conn, query(schema, "job_resolve_new"), check)
        except psycopg.Error as exc:
            _resolve_failed(exc)
    return ids
