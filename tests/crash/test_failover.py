"""Failover: kill -9 the primary under two busy workers and a producer, promote its
synchronous standby. The workers and the producer ride it out (same processes), no
acknowledged job is lost, work resumes within seconds of the promotion, and a job runs
twice only if it was in flight at the crash.

Everyone connects with one multi-host DSN (``host=a,b ... target_session_attrs=read-write``):
libpq skips the dead primary and, until the promotion, the read-only standby. What the
producer sees (README, "High availability"): an enqueue in flight at the crash raises
``psycopg.OperationalError`` (it may or may not have committed), and is retried with the
same dedupe key, so a job that did commit is not written twice; enqueues started during
the outage wait for a connection (the pool's timeout, 30 s) and succeed once the standby
is promoted. Result waiters (``Job.result``) keep waiting and get their answer."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgqueue.migrate import upgrade
from tests.helpers import wait_until
from tests.pgcluster import PgCluster
from tests.pgreplica import Standby
from tests.worker.procs import ROOT, Workers, create_effects

pytestmark = pytest.mark.crash

SCHEMA = "pgq_failover"
PG15_BIN = Path("/usr/lib/postgresql/15/bin")
RESUME_BOUND = 5.0  # seconds from the promotion to the first job claimed (issue 13)


@pytest.fixture
def pair() -> Iterator[tuple[PgCluster, Standby]]:
    """A primary and its synchronous streaming standby (PostgreSQL 15 if the machine has
    it, else the embedded 18), each on a free loopback port."""
    tmp = Path(tempfile.mkdtemp(prefix="pgqf"))
    bin_dir = PG15_BIN if (PG15_BIN / "pg_basebackup").exists() else None
    primary = PgCluster(tmp / "primary", bin_dir=bin_dir)
    standby = Standby(primary, tmp / "standby")
    try:
        primary.init()
        primary.start()
        standby.init()
        standby.start()
        standby.make_synchronous()
        yield primary, standby
    finally:
        try:
            standby.destroy()
        finally:
            primary.destroy()
            shutil.rmtree(tmp, ignore_errors=True)


def _env(dsn: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PGQUEUE_", "PG"))}
    env.pop("DATABASE_URL", None)
    return {**env, "PGQUEUE_DSN": dsn, "PGQUEUE_SCHEMA": SCHEMA, "PYTHONUNBUFFERED": "1"}


def _count(dsn: str, sql: str) -> int:
    """One count from the database; -1 while it cannot be reached."""
    try:
        with psycopg.connect(dsn, connect_timeout=2) as conn:
            row = conn.execute(sql).fetchone()
            return int(row[0]) if row else 0
    except psycopg.OperationalError:
        return -1


def _acked(outdir: Path) -> dict[int, str]:
    """The producer's acknowledged jobs: id -> dedupe key (complete lines only)."""
    text = (outdir / "acked").read_text() if (outdir / "acked").exists() else ""
    return {
        int(i): k
        for i, k in (line.split() for line in text.splitlines(keepends=True) if line.endswith("\n"))
    }


@pytest.mark.parametrize(
    "outage",
    [
        pytest.param(0.0, id="promoted-at-once"),
        # An HA manager takes a while to decide (Patroni: up to its ttl, 30 s by default):
        # long enough for psycopg_pool's own reconnect backoff (1, 2, 4, 8 s) to overshoot.
        pytest.param(8.5, id="promoted-after-8.5s"),
    ],
)
def test_failover_to_a_synchronous_standby(pair: tuple[PgCluster, Standby], outage: float) -> None:
    primary, standby = pair
    dsn = (
        f"host=127.0.0.1,127.0.0.1 port={primary.port},{standby.port} user=postgres "
        "dbname=postgres target_session_attrs=read-write connect_timeout=2"
    )
    upgrade(primary.dsn, SCHEMA)
    with psycopg.connect(primary.dsn, autocommit=True) as conn:
        create_effects(conn, SCHEMA)
    workers = Workers(dsn, SCHEMA)
    outdir = Path(tempfile.mkdtemp(prefix="pgqprod"))
    producer: subprocess.Popen[bytes] | None = None
    producer_log = (outdir / "producer.log").open("wb")
    try:
        ws = [workers.start("--concurrency", "4", "--lease", "10", name=f"w{i}") for i in range(2)]
        with psycopg.connect(dsn, autocommit=True) as conn:
            workers.wait_registered(conn, *ws)
        producer = subprocess.Popen(
            [sys.executable, "-m", "tests.crash.failover_producer", str(outdir)],
            cwd=ROOT,
            env=_env(dsn),
            stdin=subprocess.DEVNULL,
            stdout=producer_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        done = f"SELECT count(*) FROM {SCHEMA}.all_jobs WHERE state = 'succeeded'"
        wait_until(
            lambda: len(_acked(outdir)) >= 150 and _count(primary.dsn, done) >= 100,
            timeout=30,
            interval=0.05,
            what="the drain under way on the primary",
        )

        killed_at = datetime.now(UTC)
        primary.kill_postmaster(backend_grace=0)  # every server process at once, as a crash
        dead_at = datetime.now(UTC)  # every process of the old primary is gone
        # The scenario's outage (no condition to wait for: nobody is promoting meanwhile).
        time.sleep(outage)
        standby.promote()
        promoted_at = datetime.now(UTC)
        acked_at_promotion = len(_acked(outdir))
        print(
            f"primary killed at {killed_at:%T.%f} (all gone {dead_at:%T.%f}), "
            f"standby promoted {promoted_at:%T.%f}"
        )

        wait_until(
            lambda: len(_acked(outdir)) >= acked_at_promotion + 150,
            timeout=30,
            interval=0.05,
            what="the producer enqueueing again",
        )
        assert producer.poll() is None, "the producer exited during the failover"
        (outdir / "stop").touch()
        assert producer.wait(30) == 0, (outdir / "producer.log").read_text()
        acked = _acked(outdir)
        id_list = ",".join(map(str, acked))
        wanted = (
            f"SELECT count(*) FROM {SCHEMA}.all_jobs "
            f"WHERE id IN ({id_list}) AND state = 'succeeded'"
        )
        wait_until(
            lambda: _count(standby.dsn, wanted) == len(acked),
            timeout=40,
            interval=0.2,
            what="every acknowledged job succeeded on the new primary",
        )
        for w in ws:
            assert w.proc.poll() is None, f"{w.name} exited"

        with psycopg.connect(standby.dsn, autocommit=True) as conn:
            pids = [w.pid for w in ws]
            _report(conn, acked, (killed_at, dead_at), promoted_at, outdir, outage, pids)
    finally:
        if producer is not None and producer.poll() is None:
            producer.kill()
            producer.wait(10)
        producer_log.close()
        workers.close()
        shutil.rmtree(outdir, ignore_errors=True)


def _report(
    conn: psycopg.Connection[Any],
    acked: dict[int, str],
    crash: tuple[datetime, datetime],
    promoted_at: datetime,
    outdir: Path,
    outage: float,
    worker_pids: list[int],
) -> None:
    """Assert what the failover must keep, and print what it cost. ``crash``: when the kill
    began, and when every process of the old primary was gone (what was written between
    the two, the old primary may still have committed)."""
    s, ids = SCHEMA, list(acked)
    killed_at, dead_at = crash
    states = dict(
        conn.execute(f"SELECT id, state FROM {s}.all_jobs WHERE id = ANY(%s)", (ids,)).fetchall()
    )
    lost = [i for i in ids if i not in states]
    assert not lost, f"acknowledged jobs missing on the new primary: {lost[:20]}"
    assert set(states.values()) == {"succeeded"}
    # A retried enqueue (same dedupe key) returned the job its lost acknowledgement had
    # written instead of writing a second one.
    twice = conn.execute(
        f"SELECT dedupe_key FROM {s}.all_jobs GROUP BY 1 HAVING count(*) > 1"
    ).fetchall()
    assert twice == []
    # The handler of each job ran for the attempt that completed it.
    unrecorded = conn.execute(
        f"SELECT count(*) FROM {s}.all_jobs j WHERE NOT EXISTS (SELECT 1 FROM {s}.effects e "
        "WHERE e.job_id = j.id AND e.attempt = j.attempt)"
    ).fetchone()
    assert unrecorded == (0,)

    # Work resumed: the first job claimed after the crash (necessarily on the new primary).
    row = conn.execute(
        f"SELECT min(started_at) FROM {s}.all_jobs WHERE started_at > %s", (dead_at,)
    ).fetchone()
    assert row is not None and row[0] is not None
    # (Below zero: claimed before pg_ctl promote, which polls every 0.1 s, had returned.)
    resume = (row[0] - promoted_at).total_seconds()

    # Duplicates (a handler that ran more than once) only for jobs in flight at the crash:
    # two runs, the first wrote its effect on the old primary, the second on the new one.
    dups = conn.execute(
        f"SELECT job_id, count(*), min(at), max(at) FROM {s}.effects GROUP BY job_id "
        "HAVING count(*) > 1"
    ).fetchall()
    unexplained = [(j, n) for j, n, first, last in dups if n > 2 or not first < dead_at < last]
    assert not unexplained, f"jobs run twice not in flight at the crash: {unexplained}"
    in_flight = conn.execute(
        f"SELECT count(*) FROM {s}.all_jobs WHERE started_at < %(d)s AND finished_at > %(k)s",
        {"k": killed_at, "d": dead_at},
    ).fetchone()

    # The same two worker processes heartbeat on the new primary (a beat that failed in
    # the outage is retried a beat later: lease / 3).
    def beating() -> list[int]:
        sql = f"SELECT pid FROM {s}.workers WHERE last_heartbeat_at > %s"
        return sorted(r[0] for r in conn.execute(sql, (promoted_at,)))

    wait_until(
        lambda: beating() == sorted(worker_pids),
        timeout=15,
        interval=0.1,
        what="both workers heartbeating on the new primary",
    )

    # Result waiters (Job.result in the producer) rode it out too.
    results = (outdir / "results").read_text().splitlines()
    assert results and all(line.endswith(" ok") for line in results), results

    errors = (outdir / "errors").read_text().splitlines() if (outdir / "errors").exists() else []
    print(
        f"failover (promoted {outage:.1f}s after the crash): {len(ids)} jobs acknowledged, "
        f"0 lost; work resumed {resume:+.2f}s after the promotion; {len(dups)} job(s) ran "
        "twice (in flight at the crash: "
        f"{in_flight[0] if in_flight else '?'}); the producer saw {len(errors)} failed "
        f"enqueue(s) ({len({e.split()[1] for e in errors})} job(s)), each retried; "
        f"{len(results)} result waits all answered"
    )
    assert resume < RESUME_BOUND, f"work resumed {resume:.2f}s after the promotion"
