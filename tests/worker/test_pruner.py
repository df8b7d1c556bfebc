"""Retention: the pruner deletes only finished jobs older than their state's retention."""

from __future__ import annotations

import asyncio

import psycopg
from psycopg_pool import AsyncConnectionPool

from pgqueue import App, JobSpec
from pgqueue.maintenance import Pruner, Retention

Conn = psycopg.Connection[tuple[object, ...]]


def test_pruner_deletes_only_what_retention_says(
    app: App, conn: Conn, schema: str, pg_dsn: str
) -> None:
    app.strict_tasks = False
    ids = app.enqueue_many([JobSpec("t.x", [i]) for i in range(11)])
    s = f'"{schema}".jobs'
    # (state, finished how many seconds ago) per job
    plan = [
        ("succeeded", 120),
        ("succeeded", 10),
        ("failed", 120),
        ("failed", 400),
        ("cancelled", 120),
        ("cancelled", 10),
        ("queued", None),
        ("running", None),
        ("succeeded", 3000),
        ("succeeded", 120),  # these two move to succeeded_jobs, as a completion does
        ("succeeded", 10),
    ]
    for job_id, (state, ago) in zip(ids, plan, strict=True):
        conn.execute(
            f"UPDATE {s} SET state = %s, finished_at = now() - make_interval(secs => %s), "
            "lease_expires_at = CASE WHEN %s = 'running' THEN now() + interval '1 h' END "
            "WHERE id = %s",
            (state, ago or 0, state, job_id),
        )
    conn.execute(
        f"WITH m AS (DELETE FROM {s} WHERE id = ANY(%s) RETURNING *) "
        f'INSERT INTO "{schema}".succeeded_jobs SELECT * FROM m',
        (ids[9:],),
    )

    async def prune() -> int:
        async with AsyncConnectionPool(
            pg_dsn, min_size=1, max_size=1, kwargs={"autocommit": True}
        ) as pool:
            pruner = Pruner(
                pool, schema, Retention(succeeded=60, failed=300, cancelled=60), limit=2
            )  # a small batch, so several batches run
            return await pruner.run_once()

    assert asyncio.run(prune()) == 5
    left = {r[0] for r in conn.execute(f'SELECT id FROM "{schema}".all_jobs').fetchall()}
    assert left == {ids[1], ids[2], ids[5], ids[6], ids[7], ids[10]}


def test_vacuumer_clears_dead_rows_when_due(app: App, conn: Conn, schema: str, pg_dsn: str) -> None:
    from pgqueue.maintenance import Vacuumer
    from tests.helpers import wait_until

    app.strict_tasks = False
    app.enqueue_batch("t.x", [{"i": i} for i in range(3000)])
    for _ in range(3):  # every update leaves a dead row behind
        conn.execute(f'UPDATE "{schema}".jobs SET priority = priority + 1')

    def dead() -> int:
        row = conn.execute(
            "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = %s::regclass",
            (f'"{schema}".jobs',),
        ).fetchone()
        return int(row[0]) if row else 0

    wait_until(lambda: dead() >= 3000, timeout=10, what="dead rows counted")

    async def vacuum(min_dead: int) -> bool:
        async with AsyncConnectionPool(
            pg_dsn, min_size=1, max_size=1, kwargs={"autocommit": True}
        ) as pool:
            # stale_after=0: due even when autovacuum is on and ran a moment ago
            return await Vacuumer(pool, schema, min_dead=min_dead, stale_after=0).run_once()

    assert asyncio.run(vacuum(min_dead=10**9)) is False  # not due: nothing done
    assert asyncio.run(vacuum(min_dead=1000)) is True

    def vacuumed() -> bool:
        row = conn.execute(
            "SELECT vacuum_count FROM pg_stat_user_tables WHERE relid = %s::regclass",
            (f'"{schema}".jobs',),
        ).fetchone()
        return bool(row and row[0] >= 1)

    # (Whether the dead rows are gone depends on other sessions' open snapshots on a
    # shared server; that the VACUUM ran is what this service is responsible for.)
    wait_until(vacuumed, timeout=10, what="the jobs table vacuumed")


def test_vacuumer_also_vacuums_succeeded_jobs_the_pruner_emptied(
    app: App, conn: Conn, schema: str, pg_dsn: str
) -> None:
    """Pruned succeeded jobs leave dead rows in succeeded_jobs: that table is vacuumed too
    (without it, with autovacuum off, the history table grew by all it pruned)."""
    from pgqueue.maintenance import Vacuumer
    from tests.helpers import wait_until

    app.strict_tasks = False
    app.enqueue_batch("t.x", [{"i": i} for i in range(3000)])
    conn.execute(f"UPDATE \"{schema}\".jobs SET state = 'succeeded', finished_at = now()")
    conn.execute(
        f'WITH m AS (DELETE FROM "{schema}".jobs RETURNING *) '
        f'INSERT INTO "{schema}".succeeded_jobs SELECT * FROM m'
    )
    conn.execute(f'DELETE FROM "{schema}".succeeded_jobs')  # what the pruner does

    def stats(table: str) -> tuple[int, int]:
        row = conn.execute(
            "SELECT n_dead_tup, vacuum_count FROM pg_stat_user_tables WHERE relid = %s::regclass",
            (f'"{schema}".{table}',),
        ).fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    wait_until(lambda: stats("succeeded_jobs")[0] >= 3000, timeout=10, what="dead rows counted")

    async def vacuum() -> bool:
        async with AsyncConnectionPool(
            pg_dsn, min_size=1, max_size=1, kwargs={"autocommit": True}
        ) as pool:
            return await Vacuumer(pool, schema, min_dead=1000, stale_after=0).run_once()

    assert asyncio.run(vacuum()) is True
    wait_until(lambda: stats("succeeded_jobs")[1] >= 1, timeout=10, what="succeeded_jobs vacuumed")
