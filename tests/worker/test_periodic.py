"""Periodic jobs against a real PostgreSQL: the scheduler in-process (registration,
catch-up after downtime, schedulers racing for the same ticks) and ``pgqueue work`` as
real processes (three workers, one job per tick; all stopped and one restarted).

Ticks are judged on the database's clock, so the tests read ``now()`` from it too.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from pgqueue import App
from pgqueue.cron import Every
from pgqueue.maintenance import Scheduler
from tests.helpers import wait_until
from tests.worker.procs import Workers

Conn = psycopg.Connection[Any]
SECOND = timedelta(seconds=1)


def db_now(conn: Conn) -> datetime:
    row = conn.execute("SELECT now()").fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def periodic_row(conn: Conn, schema: str, name: str) -> tuple[str, datetime] | None:
    row = conn.execute(
        f'SELECT schedule, last_tick FROM "{schema}".periodic WHERE name = %s', (name,)
    ).fetchone()
    return None if row is None else (row[0], row[1])


def put_row(conn: Conn, schema: str, name: str, schedule: str, last_tick: datetime) -> None:
    """A schedule's row as a worker left it (the last tick it handled)."""
    conn.execute(
        f'INSERT INTO "{schema}".periodic (name, schedule, last_tick) VALUES (%s, %s, %s)',
        (name, schedule, last_tick),
    )


def run_ats(conn: Conn, schema: str, task: str | None = None) -> list[datetime]:
    """The tick of every periodic job (of ``task``), in order, from its dedupe key
    ``periodic:<name>:<tick>`` (a retry moves run_at; the key stays)."""
    keys = conn.execute(
        f'SELECT dedupe_key FROM "{schema}".all_jobs '
        "WHERE %(task)s::text IS NULL OR task = %(task)s",
        {"task": task},
    )
    return sorted(datetime.fromisoformat(k.split(":", 2)[2]) for (k,) in keys)


def assert_consecutive(ticks: list[datetime], step: timedelta = SECOND) -> None:
    assert ticks, "no ticks"
    assert len(set(ticks)) == len(ticks), f"a tick has two jobs: {ticks}"
    want = [ticks[0] + i * step for i in range(len(ticks))]
    assert ticks == want, f"ticks missing: {sorted(set(want) - set(ticks))}"


@asynccontextmanager
async def scheduler(app: App, **options: Any) -> AsyncIterator[Scheduler]:
    """A Scheduler for ``app``'s schedules on a pool of its own."""
    pool = AsyncConnectionPool(app.dsn, min_size=1, kwargs={"autocommit": True}, open=False)
    await pool.open(wait=True)
    try:
        yield Scheduler(pool, app.schema, app.schedules.values(), **options)
    finally:
        await pool.close()


def one_pass(app: App, **options: Any) -> tuple[float, Scheduler]:
    async def main() -> tuple[float, Scheduler]:
        async with scheduler(app, **options) as s:
            return await s.run_once(), s

    return asyncio.run(main())


def clear_of_the_hour(conn: Conn) -> datetime:
    """The current hourly tick, once the database's clock is 3 s or more past it and 3 s
    or more before the next one (a test judging one hourly tick must not straddle two)."""
    hourly = Every(3600)
    while True:
        now = db_now(conn)
        since = (now - hourly.last_at_or_before(now)).total_seconds()
        if 3 <= since <= 3590:
            return hourly.last_at_or_before(now)
        time.sleep(13 if since > 3590 else 3 - since)  # a wall-clock wait is the point here


# -- the scheduler in-process ----------------------------------------------------------------


def test_a_new_schedule_starts_at_the_next_tick(app: App, conn: Conn, schema: str) -> None:
    @app.periodic(every=3600, name="hourly")
    def hourly() -> None: ...

    before = db_now(conn)
    wait, s = one_pass(app)
    after = db_now(conn)
    row = periodic_row(conn, schema, "hourly")
    assert row is not None and row[0] == "every 3600s"
    assert row[1] in {Every(3600).last_at_or_before(before), Every(3600).last_at_or_before(after)}
    assert run_ats(conn, schema) == [] and s.enqueued == 0
    assert 0 < wait <= 10.0  # until the next tick, at most max_sleep


@pytest.mark.parametrize(("catch_up", "jobs"), [("latest", 1), ("none", 0)])
def test_catch_up_after_a_downtime(
    app: App, conn: Conn, schema: str, catch_up: str, jobs: int
) -> None:
    @app.periodic(every=3600, name="hourly", catch_up=catch_up, grace=1)
    def hourly() -> None: ...

    current = clear_of_the_hour(conn)
    # the last worker stopped four hours ago: three hourly ticks and the current one missed
    put_row(conn, schema, "hourly", "every 3600s", current - 4 * timedelta(hours=1))
    _, s = one_pass(app)
    assert run_ats(conn, schema) == [current] * jobs  # latest: only the newest missed tick
    assert periodic_row(conn, schema, "hourly") == ("every 3600s", current)
    assert s.enqueued == jobs
    one_pass(app)  # nothing more is due
    assert len(run_ats(conn, schema)) == jobs


def test_on_time_ticks_each_get_a_job_with_the_options(app: App, conn: Conn, schema: str) -> None:
    @app.periodic(every=1, name="second", queue="reports", priority=5, max_attempts=3, args=[7])
    def second(n: int) -> None: ...

    conn.execute(f'LISTEN "{schema}_jobs"')
    now = db_now(conn)
    last = Every(1).last_at_or_before(now)
    put_row(conn, schema, "second", "every 1s", last - 3 * SECOND)  # a 3 s stall, grace 10 s
    one_pass(app)
    ticks = run_ats(conn, schema)
    assert ticks[:3] == [last - 2 * SECOND, last - SECOND, last]
    assert_consecutive(ticks)
    rows = conn.execute(
        f'SELECT DISTINCT task, queue, priority, max_attempts, args, state FROM "{schema}".all_jobs'
    ).fetchall()
    assert rows == [("second", "reports", 5, 3, [7], "queued")]
    keys = conn.execute(
        f'SELECT dedupe_key, run_at FROM "{schema}".all_jobs ORDER BY id'
    ).fetchall()
    assert keys[0] == (f"periodic:second:{ticks[0].isoformat()}", ticks[0])  # run_at = tick
    assert periodic_row(conn, schema, "second") == ("every 1s", ticks[-1])
    notified = [n.payload for n in conn.notifies(timeout=2, stop_after=1)]
    assert notified == ["reports"]  # the NOTIFY trigger fired: workers wake at once


def test_a_changed_schedule_is_taken_over_without_a_burst(
    app: App, conn: Conn, schema: str
) -> None:
    @app.periodic(every=1, name="job")
    def job() -> None: ...

    now = db_now(conn)
    put_row(conn, schema, "job", "every 7s", now - timedelta(minutes=5))
    one_pass(app)
    schedule, last_tick = periodic_row(conn, schema, "job") or ("", now)
    assert schedule == "every 1s"
    assert now - SECOND < last_tick <= db_now(conn)  # goes on from now
    assert run_ats(conn, schema) == []


def test_racing_schedulers_enqueue_each_tick_once(app: App, conn: Conn, schema: str) -> None:
    @app.periodic(every=1, name="race", grace=3600)
    def race() -> None: ...

    start = Every(1).last_at_or_before(db_now(conn)) - 40 * SECOND
    put_row(conn, schema, "race", "every 1s", start)

    async def main() -> list[Scheduler]:
        # one tick per pass, so that four schedulers race for every one of 40+ ticks
        async with (
            scheduler(app, limit=1) as a,
            scheduler(app, limit=1) as b,
            scheduler(app, limit=1) as c,
            scheduler(app, limit=1) as d,
        ):
            racers = [a, b, c, d]
            for _ in range(400):
                waits = await asyncio.gather(*(r.run_once() for r in racers))
                if min(waits) > 0.05:  # caught up: the next tick is not due yet
                    break
            return racers

    racers = asyncio.run(main())
    ticks = run_ats(conn, schema)
    assert ticks[0] == start + SECOND and len(ticks) >= 40
    assert_consecutive(ticks)
    assert sum(r.enqueued for r in racers) == len(ticks)
    assert sum(r.lost_races for r in racers) > 0, "the schedulers did race"
    assert sum(r.enqueued > 0 for r in racers) >= 2, "more than one won some ticks"


# -- pgqueue work processes --------------------------------------------------------------------

PERIODIC = {"SAMPLE_PERIODIC": "1"}
WORK = ("-q", "periodic", "--lease", "2", "--poll-interval", "0.5", "--concurrency", "4")


def started_at(conn: Conn, schema: str, pid: int) -> datetime:
    row = conn.execute(
        f'SELECT started_at FROM "{schema}".workers WHERE pid = %s', (pid,)
    ).fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def test_three_workers_one_job_per_tick_and_a_restart(
    conn: Conn, schema: str, workers: Workers
) -> None:
    procs = [workers.start(*WORK, name=f"w{i}", env=PERIODIC) for i in range(3)]
    workers.wait_registered(conn, *procs)
    # six ticks with three schedulers racing; one worker is killed halfway (a crash)
    wait_until(lambda: len(run_ats(conn, schema, "tick_latest")) >= 3, timeout=15)
    procs[0].kill()
    first_count = len(run_ats(conn, schema, "tick_latest"))
    wait_until(lambda: len(run_ats(conn, schema, "tick_latest")) >= first_count + 3, timeout=15)
    for task in ("tick_latest", "tick_none"):
        assert_consecutive(run_ats(conn, schema, task))
    # every tick's job ran; the one the killed worker held did after its lease expired
    wait_until(
        lambda: (
            conn.execute(
                f"SELECT count(*) FILTER (WHERE state <> 'succeeded') FROM \"{schema}\".all_jobs "
                "WHERE run_at < now() - interval '0.5 s'"
            ).fetchone()
            == (0,)
        ),
        timeout=15,
        what="every due tick's job succeeded",
    )

    # every worker stops; three ticks or more pass with none running
    for p in procs[1:]:
        p.signal(signal.SIGTERM)
    for p in procs[1:]:
        assert p.wait_exit(20) == 0
    before = {task: run_ats(conn, schema, task) for task in ("tick_latest", "tick_none")}
    time.sleep(3.5)  # the downtime: wall-clock ticks must pass
    again = workers.start(*WORK, name="again", env=PERIODIC)
    workers.wait_registered(conn, again)
    restart = started_at(conn, schema, again.pid)
    wait_until(
        lambda: max(run_ats(conn, schema, "tick_latest")) >= restart + 3 * SECOND,
        timeout=15,
        what="three ticks after the restart",
    )
    for task, policy in (("tick_latest", "latest"), ("tick_none", "none")):
        old = before[task]
        assert_consecutive(old)
        new = [t for t in run_ats(conn, schema, task) if t > old[-1]]
        assert_consecutive(new)  # no tick twice, and none lost after the restart
        # one job at most for the whole downtime: the ticks more than the grace (0.9 s) old
        # at the restart got none; the newest tick at the restart got one with "latest"
        # always, with "none" only if it was on time (tests/unit/test_periodic.py and
        # test_catch_up_after_a_downtime above tell the two policies apart exactly)
        assert new[0] - old[-1] >= 3 * SECOND, (policy, old[-1], new[0])
        assert new[0] > restart - SECOND, (policy, restart, new[0])
        late = conn.execute(
            f'SELECT count(*) FROM "{schema}".all_jobs WHERE task = %s '
            "AND created_at - run_at > interval '1.5 s'",
            (task,),
        ).fetchone()
        assert late == (0,), policy
    log = again.log()
    assert "tick_latest: ticks from" in log and "(catch_up=latest), enqueued tick" in log
    assert "tick_none: ticks from" in log and "(catch_up=none)" in log
