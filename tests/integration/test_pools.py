"""pgqueue's pools hand out the most recently returned connection (pgqueue/pools.py)."""

from __future__ import annotations

import asyncio

import psycopg
from psycopg.conninfo import make_conninfo

from pgqueue import App
from pgqueue.pools import AsyncPool, Pool
from tests.helpers import wait_until


def test_sync_pool_reuses_the_connection_just_returned(pg_dsn: str) -> None:
    with Pool(pg_dsn, min_size=3, max_size=3, open=True) as pool:
        pool.wait()
        assert pool.get_stats()["pool_available"] == 3
        seen = set()
        for _ in range(6):
            with pool.connection() as conn:
                seen.add(conn.info.backend_pid)
        # psycopg_pool's own FIFO would have rotated through all three backends.
        assert len(seen) == 1, "psycopg_pool changed: pgqueue.pools no longer makes a stack"
        # A burst still gets distinct connections, and all come back.
        a, b = pool.getconn(), pool.getconn()
        assert a is not b
        pool.putconn(a)
        pool.putconn(b)
        with pool.connection() as conn:
            assert conn is b
        assert pool.get_stats()["pool_available"] == 3


def test_async_pool_reuses_the_connection_just_returned(pg_dsn: str) -> None:
    async def main() -> set[int]:
        async with AsyncPool(pg_dsn, min_size=3, max_size=3, open=False) as pool:
            await pool.wait()
            seen = set()
            for _ in range(6):
                async with pool.connection() as conn:
                    seen.add(conn.info.backend_pid)
            return seen

    assert len(asyncio.run(main())) == 1


def test_app_enqueues_on_one_backend_after_its_pool_grew(app: App) -> None:
    app.task(name="tests.noop")(lambda i: None)
    pool = app.pool()
    with pool.connection(), pool.connection():
        pass  # two at once: the pool now holds two connections
    assert pool.get_stats()["pool_size"] >= 2
    pids = set()
    for n in range(5):
        app.enqueue("tests.noop", kwargs={"i": n})
        with pool.connection() as conn:
            pids.add(conn.info.backend_pid)
    assert len(pids) == 1


def _terminate(pg_dsn: str, pids: set[int]) -> None:
    """pg_terminate_backend each pid, then wait until those backends are gone."""
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) pid", (list(pids),))
        wait_until(
            lambda: not admin.execute(
                "SELECT 1 FROM pg_stat_activity WHERE pid = ANY(%s)", (list(pids),)
            ).fetchone(),
            what="terminated backends gone",
        )


def test_sync_pool_skips_connections_the_server_closed(pg_dsn: str) -> None:
    """After a restart or failover, idle connections to the old server are dropped at
    checkout instead of failing the next caller (pgqueue/pools.py)."""
    with Pool(pg_dsn, min_size=3, max_size=3, open=True) as pool:
        pool.wait()
        conns = [pool.getconn() for _ in range(3)]
        old = {c.info.backend_pid for c in conns}
        for c in conns:
            pool.putconn(c)
        _terminate(pg_dsn, old)
        for _ in range(6):  # each of the three dead ones would have failed one caller
            with pool.connection() as conn:
                assert conn.execute("SELECT pg_backend_pid()").fetchone() not in old
        assert all(c.closed for c in conns)  # dropped, not handed out again


def test_async_pool_skips_connections_the_server_closed(pg_dsn: str) -> None:
    async def main() -> None:
        async with AsyncPool(pg_dsn, min_size=3, max_size=3, open=False) as pool:
            await pool.wait()
            conns = [await pool.getconn() for _ in range(3)]
            old = {c.info.backend_pid for c in conns}
            for c in conns:
                await pool.putconn(c)
            await asyncio.to_thread(_terminate, pg_dsn, old)
            for _ in range(6):
                async with pool.connection() as conn:
                    cur = await conn.execute("SELECT pg_backend_pid()")
                    assert (await cur.fetchone()) not in old

    asyncio.run(main())


def test_pooled_connections_get_tcp_timeouts_the_dsn_does_not_set(pg_dsn: str) -> None:
    dsn = make_conninfo(pg_dsn, keepalives_idle=60)
    with Pool(dsn, min_size=1, max_size=1, open=True) as pool, pool.connection() as conn:
        params = conn.info.get_parameters()
    assert params["keepalives_idle"] == "60"  # the DSN's own
    assert params["tcp_user_timeout"] == "30000"
    assert params["keepalives_count"] == "3"
