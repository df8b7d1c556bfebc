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
    ids = app.enqueue_many([JobSpec("t.x", [i]) for i in range(9)])
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
    ]
    for job_id, (state, ago) in zip(ids, plan, strict=True):
        conn.execute(
            f"UPDATE {s} SET state = %s, finished_at = now() - make_interval(secs => %s), "
            "lease_expires_at = CASE WHEN %s = 'running' THEN now() + interval '1 h' END "
            "WHERE id = %s",
            (state, ago or 0, state, job_id),
        )

    async def prune() -> int:
        async with AsyncConnectionPool(
            pg_dsn, min_size=1, max_size=1, kwargs={"autocommit": True}
        ) as pool:
            pruner = Pruner(
                pool, schema, Retention(succeeded=60, failed=300, cancelled=60), limit=2
            )  # a small batch, so several batches run
            return await pruner.run_once()

    assert asyncio.run(prune()) == 4
    left = {r[0] for r in conn.execute(f"SELECT id FROM {s}").fetchall()}
    assert left == {ids[1], ids[2], ids[5], ids[6], ids[7]}
