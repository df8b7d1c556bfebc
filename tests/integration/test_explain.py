"""The claim and the reaper stay on their partial indexes (EXPLAIN, on a realistic table)."""

from __future__ import annotations

import psycopg

from pgqueue import App, JobSpec


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
        {"queues": ["q1"], "limit": 10, "worker_id": "w", "lease": 30.0},
    )
    assert "jobs_claim_idx" in claim, claim
    assert "Seq Scan" not in claim, claim

    reap = _plan(conn, app.query("job_reap_expired"), {"limit": 1000, "key": "k"})
    assert "jobs_lease_idx" in reap, reap
    assert "Seq Scan on jobs" not in reap, reap
