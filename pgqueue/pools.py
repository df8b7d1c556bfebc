"""pgqueue's connection pools: psycopg_pool's, handing out the most recently used
connection first.

psycopg_pool keeps idle connections in a deque, takes them with ``popleft()`` and puts
them back with ``append()``: a FIFO that rotates through every idle connection. Once a
pool has grown to two connections (the first enqueue racing the pool's own first
connect is enough), a client doing one call at a time alternates between two server
backends, each gone cold since its last turn. Measured here (2 cores, PostgreSQL 15,
one INSERT per call): 308-325 us per call on a one-connection pool, 368-387 us on two or
three. A stack keeps reusing the backend that just ran: its caches are warm and the
others stay idle, so psycopg_pool's ``max_idle`` can close them.

Both pools add a connect timeout to their conninfo (``db.with_connect_timeout``), so a
server that accepts and never answers fails each attempt in seconds, not minutes.

Three more changes make a failover (or a restart) short for pgqueue's callers:

- A connection the server has already closed is not handed out. An idle connection
  whose server went away (killed, restarted, failed over: its socket has read EOF) stays
  in psycopg_pool until someone uses it, and that use fails. Checking out, the pools
  look at the socket (one ``poll``, no round trip); only if the server has spoken while
  the connection sat idle do they check it with an empty query, and a connection found
  dead is dropped (the pool replaces it) and the next one taken. A host that vanished
  without closing its sockets is not caught here: TCP keepalives and ``tcp_user_timeout``
  notice that (next point).
- TCP timeouts (``TCP_DEFAULTS``), for each one the DSN does not set itself. Without them
  a connection to a host that vanished (power loss, network partition: no FIN, no RST)
  looks alive: an idle one for two hours (the kernel's keepalive default), and a query
  sent on it waits about 15 minutes of retransmissions before failing. With them an idle
  connection is found dead after ~25 s of silence (keepalives) and a query that got no
  acknowledgement fails after 30 s (``tcp_user_timeout``); a long-running query is not
  affected (a server that is busy still acknowledges).
- A lost connection is re-opened every second at most. psycopg_pool waits 1, 2, 4, 8 ...
  seconds between attempts (up to ``reconnect_timeout``, 5 minutes), so a server that
  was away for 8 s could wait 16 s more to be used again. Here the waits are 0.2, 0.4,
  0.8, then 1 s. A failed attempt is cheap for the server (refused, or turned away by
  ``target_session_attrs``), so one a second per pool is no storm.

The swap touches one private attribute (``_pool``). If a psycopg_pool release renames it,
the pools below keep working as plain FIFO pools (``tests/integration/test_pools.py``
fails and says so). On shrinking, psycopg_pool closes the connection its ``popleft()`` returns,
here the most recently used one; which idle connection goes is harmless either way. The
capped backoff overrides ``_add_connection``, private too: if it is renamed, psycopg_pool's
own backoff applies again (slower recovery, nothing worse).
"""

from __future__ import annotations

import contextlib
import select
from collections import deque
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool, ConnectionPool
from psycopg_pool.base import AttemptWithBackoff

from .db import with_connect_timeout


class _MostRecentFirst(deque[Any]):
    """A deque whose ``popleft()`` takes from the right: a stack to psycopg_pool."""

    def popleft(self) -> Any:
        return self.pop()


def _stack_of(pool: ConnectionPool | AsyncConnectionPool) -> None:
    if type(getattr(pool, "_pool", None)) is deque:
        pool._pool = _MostRecentFirst(pool._pool)  # type: ignore[attr-defined]


#: libpq TCP settings every pooled connection gets unless its DSN (or the pool's connection
#: kwargs) sets them; see the module docstring. The LISTEN connections use the same.
TCP_DEFAULTS: dict[str, int] = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,  # milliseconds
}


def _with_tcp_defaults(conninfo: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The pool's keyword arguments with ``TCP_DEFAULTS`` added to its connection kwargs
    where neither the DSN nor those kwargs set them (kwargs would override the DSN)."""
    try:
        in_dsn = conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        return kwargs  # with_connect_timeout has said what is wrong with it
    connect = kwargs.get("kwargs")
    if callable(connect):
        return kwargs  # computed per connection by the caller: left alone
    connect = dict(connect or {})
    for key, value in TCP_DEFAULTS.items():
        if key == "tcp_user_timeout" and psycopg.pq.version() < 120000:
            continue  # libpq before 12 does not know it (and would refuse to connect)
        if key not in in_dsn and key not in connect:
            connect[key] = value
    return {**kwargs, "kwargs": connect}


#: Longest wait between two attempts to re-open a lost connection (seconds).
RECONNECT_MAX_DELAY = 1.0


class _Reconnect(AttemptWithBackoff):
    """psycopg_pool's reconnection backoff, starting at 0.2 s and capped at
    ``RECONNECT_MAX_DELAY`` (it still gives up after the pool's ``reconnect_timeout``)."""

    INITIAL_DELAY = 0.2

    def update_delay(self, now: float) -> None:
        super().update_delay(now)
        self.delay = min(self.delay, RECONNECT_MAX_DELAY)


def server_spoke(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool:
    """True if this idle connection needs a real check before use: it is not OK, or its
    socket is readable (the server said something while it sat idle: usually its last
    words, "terminating connection ...", then EOF). Costs one ``poll``; never raises."""
    try:
        if conn.closed or conn.pgconn.status != psycopg.pq.ConnStatus.OK:
            return True
        fd = conn.pgconn.socket
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            return bool(poller.poll(0))
        return bool(select.select([fd], [], [], 0)[0])  # pragma: no cover (Windows)
    except (psycopg.Error, OSError, ValueError):
        return True


class Pool(ConnectionPool):
    """``psycopg_pool.ConnectionPool`` that hands out the most recently used connection,
    never one whose server has closed it, and re-opens lost ones within a second."""

    def __init__(self, conninfo: str = "", *args: Any, **kwargs: Any) -> None:
        conninfo = with_connect_timeout(conninfo)
        super().__init__(conninfo, *args, **_with_tcp_defaults(conninfo, kwargs))
        _stack_of(self)

    def getconn(self, timeout: float | None = None) -> Any:
        """A live connection (see the module docstring); ``PoolTimeout`` as psycopg_pool's
        own if none is ready within ``timeout``. (After max_size dead ones in a row, the
        next is handed out unchecked: if it is dead too, its use fails with the driver's
        own error.)"""
        for _ in range(self.max_size):
            conn = super().getconn(timeout)
            if not server_spoke(conn):
                return conn
            try:
                self.check_connection(conn)  # one empty query: raises if the server is gone
                return conn
            except Exception:
                with contextlib.suppress(Exception):
                    conn.close()
                self.putconn(conn)  # a closed connection is dropped and replaced
        return super().getconn(timeout)

    def _add_connection(self, attempt: AttemptWithBackoff | None, growing: bool = False) -> None:
        super()._add_connection(attempt or _Reconnect(timeout=self.reconnect_timeout), growing)


class AsyncPool(AsyncConnectionPool):
    """``psycopg_pool.AsyncConnectionPool`` that hands out the most recently used
    connection, never one whose server has closed it, and re-opens lost ones within a
    second."""

    def __init__(self, conninfo: str = "", *args: Any, **kwargs: Any) -> None:
        conninfo = with_connect_timeout(conninfo)
        super().__init__(conninfo, *args, **_with_tcp_defaults(conninfo, kwargs))
        _stack_of(self)

    async def getconn(self, timeout: float | None = None) -> Any:
        """``Pool.getconn`` for asyncio."""
        for _ in range(self.max_size):
            conn = await super().getconn(timeout)
            if not server_spoke(conn):
                return conn
            try:
                await self.check_connection(conn)
                return conn
            except Exception:
                with contextlib.suppress(Exception):
                    await conn.close()
                await self.putconn(conn)
        return await super().getconn(timeout)

    async def _add_connection(
        self, attempt: AttemptWithBackoff | None, growing: bool = False
    ) -> None:
        await super()._add_connection(
            attempt or _Reconnect(timeout=self.reconnect_timeout), growing
        )
