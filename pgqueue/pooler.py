"""Running behind a connection pooler (pgbouncer in transaction mode): detection, and what
pgqueue does differently there.

A pooler in transaction mode hands each transaction to whichever server connection is
free, so nothing a session sets survives to the next transaction:

- the ``options`` startup parameter is refused ("unsupported startup parameter:
  options") or, with ``ignore_startup_parameters = options``, silently dropped;
- prepared statements clash: psycopg names them ``_pg3_0``, ``_pg3_1``... per client
  connection, and a server connection that one client prepared on is handed to another
  (pgbouncer before 1.21 does not track them): "prepared statement "_pg3_0" already
  exists", or worse, the other client's statement runs;
- session advisory locks, ``SET`` and ``LISTEN`` stay on a server connection that the
  next transaction may not get.

``behind_pooler(dsn)`` tells, once per DSN and process: it connects with
``options=-c pgqueue.probe=on``; a refusal, or a connection on which that setting did
not arrive, means a pooler. ``PGQUEUE_POOLER=1`` (or ``0``) overrides the detection.

Behind one, pgqueue prepares no statements on its own connections, sends the worker's
settings (jit off, lock_timeout, synchronous_commit off for ``--fast-claims``) with each
claim and completion in the same transaction (``execute`` below: one round trip, a
pipeline), vacuums without a session lock, and LISTENs on ``listen_dsn`` (a direct
connection) if one is given; if not, it checks whether a notification sent through the
pooler comes back (``notifications_arrive``; in session mode it does) and else polls
every ``NO_LISTEN_POLL_INTERVAL`` seconds, saying so once in the log.
"""

from __future__ import annotations

import os
import threading
import uuid
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from .db import application_name, describe_connect_error, with_connect_timeout
from .errors import ConfigurationError
from .sql import plain

#: Seconds between polls of a worker, and between re-reads of a result waiter, when
#: notifications cannot arrive (a transaction pooler and no ``listen_dsn``); a worker's
#: ``--poll-interval`` wins if it is shorter.
NO_LISTEN_POLL_INTERVAL = 0.5
#: Seconds ``notifications_arrive`` waits for its own notification.
PROBE_TIMEOUT = 2.0

_PROBE_OPTION = "-c pgqueue.probe=on"
_cache: dict[str, bool] = {}
_shared_cache: dict[str, bool] = {}
_lock = threading.Lock()


def _override() -> bool | None:
    """``PGQUEUE_POOLER`` as a bool, None if unset. Raises ``ConfigurationError`` for
    anything but 1/0/true/false/yes/no/on/off."""
    raw = os.environ.get("PGQUEUE_POOLER", "").strip().lower()
    if not raw:
        return None
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(
        f"PGQUEUE_POOLER={raw!r}: set it to 1 (a transaction pooler such as pgbouncer is "
        "in front of PostgreSQL) or 0 (a direct connection), or unset it to detect"
    )


def behind_pooler(dsn: str) -> bool:
    """Whether ``dsn`` reaches PostgreSQL through a connection pooler (see the module
    docstring); detected once per DSN and process with one short connection.

    Raises ``ConfigurationError`` naming the server if it cannot be reached, or for a
    bad ``PGQUEUE_POOLER``.
    """
    forced = _override()
    if forced is not None:
        return forced
    dsn = with_connect_timeout(dsn)
    with _lock:
        if dsn in _cache:
            return _cache[dsn]
    conn, found = connect_detecting(dsn, "admin")
    conn.close()
    return found


def connect_detecting(dsn: str, role: str) -> tuple[psycopg.Connection[tuple[object, ...]], bool]:
    """One autocommit connection (no prepared statements) and whether it goes through a
    pooler, remembered for ``behind_pooler``: the connection that tells is the one
    returned, so finding out costs nothing on a direct connection and one reconnect
    behind a pooler that refuses options. Raises ``ConfigurationError`` naming the
    server if it cannot be reached."""
    dsn = with_connect_timeout(dsn)
    forced = _override()
    with _lock:
        known = _cache.get(dsn) if forced is None else forced
    kwargs: dict[str, Any] = {
        "autocommit": True,
        "prepare_threshold": None,
        "application_name": application_name(dsn, role),
    }
    if known is None:
        try:
            conn = psycopg.connect(dsn, options=with_options(dsn, _PROBE_OPTION), **kwargs)
        except psycopg.OperationalError as exc:
            if "unsupported startup parameter" not in str(exc):
                raise ConfigurationError(describe_connect_error(dsn, exc)) from exc
            known = True  # pgbouncer's answer to an options parameter it does not ignore
        else:
            try:
                row = conn.execute(plain("server_probe_option")).fetchone()
            except BaseException:
                conn.close()
                raise
            found = not (row is not None and row[0] == "on")
            with _lock:
                _cache[dsn] = found
            return conn, found
        with _lock:
            _cache[dsn] = known
    try:
        return psycopg.connect(dsn, **kwargs), known
    except psycopg.OperationalError as exc:
        raise ConfigurationError(describe_connect_error(dsn, exc)) from exc


def with_options(dsn: str, extra: str) -> str:
    """The ``options`` startup parameter: the DSN's own (``options=-c search_path=...``)
    followed by ``extra``, so pgqueue's settings never drop the caller's."""
    try:
        own = str(conninfo_to_dict(dsn).get("options") or "")
    except psycopg.ProgrammingError:
        own = ""
    return f"{own} {extra}".strip()


def worker_settings(fast_claims: bool) -> dict[str, Any]:
    """The parameters of ``session_settings_local``: what the worker's startup options
    say on a direct connection (``worker.services.GENERIC_PLANS``), for one transaction."""
    return {"synchronous_commit": "off" if fast_claims else None}


async def execute(
    conn: psycopg.AsyncConnection[Any],
    sql: str,
    params: Any = None,
    *,
    settings: dict[str, Any] | None,
) -> psycopg.AsyncCursor[Any]:
    """``conn.execute(sql, params)``; with ``settings`` (behind a pooler), inside a
    transaction that first applies them with ``set_config(..., true)``, sent as one
    pipeline (one round trip). Raises what the statement raises (the transaction is
    then rolled back, settings and all)."""
    if settings is None:
        return await conn.execute(sql, params)
    async with conn.pipeline(), conn.transaction():
        await conn.execute(plain("session_settings_local"), settings)
        cur = await conn.execute(sql, params)
    return cur


def transaction_pooled(dsn: str) -> bool:
    """Whether clients of ``dsn`` share server connections (a pooler in transaction or
    statement mode), where LISTEN cannot work. Told without LISTEN, which would leave a
    server connection that others get next listening (pgbouncer then logs "got packet
    'A' from server when not linked" for every notification, and clients hang): two
    client connections ask alternately for their server's pid. In session mode each keeps
    its own server; a pid that changes, or that both see, means shared servers. Cached per
    DSN and process. Raises ``ConfigurationError`` naming the server if it cannot be
    reached."""
    dsn = with_connect_timeout(dsn)
    with _lock:
        if dsn in _shared_cache:
            return _shared_cache[dsn]
    kwargs: dict[str, Any] = {
        "autocommit": True,
        "prepare_threshold": None,
        "application_name": application_name(dsn, "listen"),
    }
    try:
        with psycopg.connect(dsn, **kwargs) as a, psycopg.connect(dsn, **kwargs) as b:
            pids: dict[str, set[int]] = {"a": set(), "b": set()}
            for name, conn in (("a", a), ("b", b), ("a", a), ("b", b), ("a", a)):
                row = conn.execute(plain("server_backend_pid")).fetchone()
                assert row is not None
                pids[name].add(int(row[0]))
    except psycopg.OperationalError as exc:
        raise ConfigurationError(describe_connect_error(dsn, exc)) from exc
    shared = len(pids["a"]) > 1 or len(pids["b"]) > 1 or bool(pids["a"] & pids["b"])
    with _lock:
        _shared_cache[dsn] = shared
    return shared


def probe_token() -> str:
    """A payload no real notification carries."""
    return "pgqueue-probe:" + uuid.uuid4().hex


def send_probe(dsn: str, channel: str, token: str) -> None:
    """Send ``token`` on ``channel`` from a connection of its own (never the listening
    one: through a pooler, a notification sent on the listening client's own transaction
    comes back to it whether or not LISTEN works). Raises psycopg's error if it cannot."""
    with psycopg.connect(
        with_connect_timeout(dsn),
        autocommit=True,
        prepare_threshold=None,
        application_name=application_name(dsn, "listen"),
    ) as conn:
        conn.execute(plain("notify_probe"), {"channel": channel, "token": token})


async def send_probe_async(dsn: str, channel: str, token: str) -> None:
    """``send_probe`` for asyncio code."""
    conn = await psycopg.AsyncConnection.connect(
        with_connect_timeout(dsn),
        autocommit=True,
        prepare_threshold=None,
        application_name=application_name(dsn, "listen"),
    )
    async with conn:
        await conn.execute(plain("notify_probe"), {"channel": channel, "token": token})


def resolve_listen_dsn(listen_dsn: str | None) -> str | None:
    """The DSN for LISTEN connections: ``listen_dsn`` (``--listen-dsn``), else
    ``PGQUEUE_LISTEN_DSN``, else None (LISTEN on the main DSN). Validated, with a
    connect timeout; raises ``ConfigurationError`` for a malformed one."""
    from .db import normalize_dsn

    for candidate in (listen_dsn, os.environ.get("PGQUEUE_LISTEN_DSN")):
        if candidate:
            return with_connect_timeout(normalize_dsn(candidate))
    return None
