"""ctx.transaction() under kill -9: worker processes killed at random points while 2,000
jobs each write their effect in the transaction that completes them. Every job ends
succeeded and its effect row exists exactly once: a killed worker's transactions roll
back with its connections, and the job's next run writes it again."""

from __future__ import annotations

import random
from typing import Any

import psycopg
import pytest

from pgqueue import App
from tests.helpers import wait_until
from tests.worker.procs import Workers, create_effects

pytestmark = pytest.mark.crash

JOBS = 2000
KILLS = 6
ARGS = ("--lease", "2", "--poll-interval", "0.2", "--concurrency", "8")


def _succeeded(conn: psycopg.Connection[Any], schema: str) -> int:
    row = conn.execute(
        f"SELECT count(*) FROM \"{schema}\".all_jobs WHERE state = 'succeeded'"
    ).fetchone()
    return int(row[0]) if row else 0


def test_kill_9_during_transactional_jobs_leaves_each_effect_exactly_once(
    pg_dsn: str, schema: str, conn: psycopg.Connection[Any]
) -> None:
    create_effects(conn, schema)
    app = App(pg_dsn, schema=schema, strict_tasks=False)
    rng = random.Random(20261205)
    try:
        # Each handler lingers 0-20 ms after its insert, before the commit: kills land there.
        app.enqueue_batch("record_tx", [[rng.random() * 0.02] for _ in range(JOBS)])
        workers = Workers(pg_dsn, schema)
        try:
            live = [workers.start(*ARGS) for _ in range(3)]
            killed = 0
            for k in range(KILLS):
                # kill at a point set by progress, not by the clock: after every ~1/8 of the jobs
                target = (k + 1) * JOBS // (KILLS + 2)
                wait_until(
                    lambda target=target: _succeeded(conn, schema) >= target,  # type: ignore[misc]
                    timeout=120,
                    interval=0.05,
                    what=f"{target} jobs succeeded",
                )
                victim = live.pop(rng.randrange(len(live)))
                victim.kill()
                killed += 1
                live.append(workers.start(*ARGS))
            wait_until(
                lambda: _succeeded(conn, schema) == JOBS,
                timeout=180,
                interval=0.2,
                what=f"all {JOBS} jobs succeeded",
            )
        finally:
            workers.close()
        runs = conn.execute(
            f'SELECT count(*), count(DISTINCT job_id) FROM "{schema}".effects'
        ).fetchone()
        reran = conn.execute(
            f'SELECT count(*) FROM "{schema}".all_jobs WHERE attempt > 1'
        ).fetchone()
        print(f"{killed} kills; {reran[0] if reran else 0} jobs ran again; effects {runs}")
        assert runs == (JOBS, JOBS), "an effect is missing or doubled"
    finally:
        app.close()
