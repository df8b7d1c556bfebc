"""The claim and the reaper stay on their partial indexes (EXPLAIN, on a realistic table)."""

from __future__ import annotations

import psycopg
import pytest

from pgqueue import App, JobSpec
from tests.helpers import generic_plan


def _plan(conn: psycopg.Connection[tuple[object, ...]], sql: str, params: dict[str, object]) -> str:
    rows = conn.execute("EXPLAIN " + sql, params).fetchall()
    return "\n".join(str(r[0]) for r in rows)


def test_claim_and_reaper_use_their_indexes(
    app: App, conn: psycopg.Connection[tuple[object, ...]], schema: str
) -> None:
    app.strict_tasks = False
    specs = [JobSpec("t.noop", [i], queue=f"q{i % 3}") for i in range(6000)]
    app.enqueue_many(specs)
    # Most of the table finished, as in production: the claim must not wade through it.
    conn.execute(
        f"UPDATE \"{schema}\".jobs SET state = 'succeeded', finished_at = now() WHERE id % 10 <> 0"
    )
    conn.execute(f'ANALYZE "{schema}".jobs')

    claim = _plan(
        conn,
        app.query("job_claim_batch"),
        {"queues": ["q1"], "limit": 10, "worker_id": "w", "lease": 30.0, "skip_tasks": []},
    )
    assert "jobs_claim_idx" in claim, claim
    assert "Seq Scan" not in claim, claim
    flow = _plan(
        conn,
        app.query("job_claim_flow"),
        {"queues": ["q1"], "limit": 10, "worker_id": "w", "lease": 30.0},
    )
    # ungrouped jobs of limited queues, and grouped ones through their own index (one
    # probe per group); the queues table is a handful of rows, a sequential scan is fine
    assert "jobs_claim_idx" in flow and "jobs_group_claim_idx" in flow, flow
    assert "Seq Scan on jobs" not in flow, flow

    reap = _plan(conn, app.query("job_reap_expired"), {"limit": 1000, "key": "k"})
    assert "jobs_lease_idx" in reap, reap
    assert "Seq Scan on jobs" not in reap, reap


def test_fenced_batch_writes_look_jobs_up_by_primary_key(
    app: App, conn: psycopg.Connection[tuple[object, ...]], schema: str
) -> None:
    """A batch completion or heartbeat must not walk the whole table (it once merge-joined
    over the full primary key index, 2 s per batch at 20,000 rows)."""
    app.strict_tasks = False
    ids = app.enqueue_many([JobSpec("t.noop", [i]) for i in range(20000)])
    conn.execute(f'ANALYZE "{schema}".jobs')
    some = ids[:500]
    done = "{" + ",".join(f'"{i}":[1,null]' for i in some) + "}"
    for name, params in [
        ("job_complete_fenced", {"ids": some, "done": done, "worker_id": "w"}),
        (
            "job_heartbeat_fenced",
            {"ids": some, "attempts": [1] * 500, "worker_id": "w", "lease": 30.0, "progress": "{}"},
        ),
        ("job_release_fenced", {"ids": some, "attempts": [1] * 500, "worker_id": "w"}),
    ]:
        plan = _plan(conn, app.query(name), params)
        assert "jobs_pkey" in plan, (name, plan)
        assert "Seq Scan on jobs" not in plan and "Merge Join" not in plan, (name, plan)
        # the batch is looked up in a jsonb object, not joined (n x n in a nested loop)
        assert "Function Scan" not in plan, (name, plan)


GENERIC_CASES = [
    ("job_claim_batch", "ARRAY['q1'], ARRAY[]::text[], 10, 'w', 30", "jobs_claim_idx"),
    ("job_claim_flow", "10, ARRAY['q1'], 'w', 30", "jobs_group_claim_idx"),
    ("job_complete_fenced", "'{}', ARRAY[1,2,3]::bigint[], 'w'", "jobs_pkey"),
    ("job_heartbeat_fenced", "ARRAY[1,2,3]::bigint[], 'w', ARRAY[1,1,1], '{}', 30", "jobs_pkey"),
    ("job_release_fenced", "ARRAY[1,2,3]::bigint[], 'w', ARRAY[1,1,1]", "jobs_pkey"),
    ("job_reap_expired", "'k', 1000", "jobs_lease_idx"),
    ("job_prune_finished", "1.0, 2.0, 3.0, 1000", "jobs_finished_idx"),
]


@pytest.mark.parametrize("name, args, index", GENERIC_CASES)
def test_generic_plans_stay_on_their_indexes(
    app: App,
    conn: psycopg.Connection[tuple[object, ...]],
    schema: str,
    name: str,
    args: str,
    index: str,
) -> None:
    """Workers run with plan_cache_mode = force_generic_plan; a plan made without the
    parameter values must still use the index (a claim once hash-joined a seq scan)."""
    app.strict_tasks = False
    app.enqueue_many([JobSpec("t.noop", [i], queue=f"q{i % 3}") for i in range(6000)])
    conn.execute(f'ANALYZE "{schema}".jobs')
    plan = generic_plan(conn, app.query(name), args)
    assert index in plan, plan
    assert "Seq Scan on jobs" not in plan, plan
    if name.endswith("_fenced"):
        # by id: after an ANALYZE that saw no running job the planner preferred the lease
        # index, and its stale entries slowed every batch of a long drain
        assert "jobs_lease_idx" not in plan, plan


@pytest.mark.parametrize(
    "name, args",
    [
        ("job_heartbeat_fenced", "ARRAY[1,2,3]::bigint[], 'w', ARRAY[1,1,1], '{}', 30"),
        ("job_held_check", "ARRAY[1,2,3]::bigint[], ARRAY[1,1,1], 'w'"),
        ("job_release_fenced", "ARRAY[1,2,3]::bigint[], 'w', ARRAY[1,1,1]"),
    ],
)
def test_batch_writes_do_not_join_the_unnested_batch_per_row(
    app: App, conn: psycopg.Connection[tuple[object, ...]], schema: str, name: str, args: str
) -> None:
    """A join with unnest(ids, attempts) was planned as a nested loop over both (each
    estimated tiny): n x n comparisons, 136 ms for a heartbeat of 1,000 held jobs and
    seconds for 10,000, longer than the lease it renews. Attempts are looked up in a
    jsonb object instead."""
    app.strict_tasks = False
    app.enqueue_many([JobSpec("t.noop", [i]) for i in range(2000)])
    conn.execute(f'ANALYZE "{schema}".jobs')
    plan = generic_plan(conn, app.query(name), args)
    assert "Function Scan" not in plan, plan
    assert "Seq Scan on jobs" not in plan, plan
    # the jsonb object is built once, not once per row
    assert "CTE held" in plan, plan


def test_worker_connections_plan_generically_without_jit(pg_dsn: str) -> None:
    """With a million queued jobs the flow claim's recursive skip scan is estimated
    expensive enough for PostgreSQL to JIT-compile it: 715 ms of compiling for a 1.5 ms
    statement, on the claim connection (the fast path waited behind it). The worker's
    connections turn JIT off and plan once (generic plans)."""
    import asyncio

    from pgqueue.worker.config import WorkerConfig
    from pgqueue.worker.services import open_pools

    async def settings() -> list[tuple[object, ...]]:
        pools = await open_pools(pg_dsn, WorkerConfig(), "explain-test")
        pool, claim_pool = pools.shared, pools.claim
        try:
            seen = []
            for p in (pool, claim_pool):
                async with p.connection() as c:
                    cur = await c.execute(
                        "SELECT current_setting('jit'), current_setting('plan_cache_mode')"
                    )
                    seen.append(await cur.fetchone())
            return seen
        finally:
            await pool.close()
            await claim_pool.close()

    assert asyncio.run(settings()) == [("off", "force_generic_plan")] * 2
