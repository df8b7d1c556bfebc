"""Fleet-wide limits with several worker processes racing: a cap on a queue's running
jobs, a rate limit, fairness across group keys (round-robin and per-group caps), and
priority aging. Each limit is checked two ways: the database's own count sampled while
the workers run, and the handlers' start/end marks (a handler runs inside its job's
running interval, so marks that overlap more than the limit would prove it broken)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from pgqueue import App
from tests.helpers import wait_until
from tests.worker.procs import Workers

Conn = psycopg.Connection[Any]
FAST = ("--lease", "5", "--poll-interval", "0.2")


def enqueue_sql(conn: Conn, schema: str, n: int, queue: str, **extra: Any) -> None:
    """n 'span' jobs through the SQL enqueue() function (group_key, priority, seconds)."""
    seconds = extra.pop("seconds", 0.0)
    conn.execute(
        f"SELECT \"{schema}\".enqueue('span', jsonb_build_object('seconds', %s::float8), "
        "queue => %s, priority => %s, group_key => %s) FROM generate_series(1, %s)",
        (seconds, queue, extra.get("priority", 0), extra.get("group_key"), n),
    )


def states(conn: Conn, schema: str, queue: str) -> dict[str, int]:
    rows = conn.execute(
        f'SELECT state, count(*) FROM "{schema}".all_jobs WHERE queue = %s GROUP BY state', (queue,)
    )
    return {state: n for state, n in rows}


def most_at_once(conn: Conn, schema: str, queue: str, group: str | None = None) -> int:
    """The most handlers of ``queue`` (and group) that were between 'start' and 'end' at
    one moment, from the effects marks."""
    rows = conn.execute(
        f'SELECT e.at, e.note FROM "{schema}".effects AS e JOIN "{schema}".all_jobs AS j '
        "ON j.id = e.job_id WHERE j.queue = %s AND (%s::text IS NULL OR j.group_key = %s) "
        "AND e.note IN ('start', 'end') ORDER BY e.at, e.note DESC",  # an end before a start
        (queue, group, group),
    ).fetchall()
    now = peak = 0
    for _, note in rows:
        now += 1 if note == "start" else -1
        peak = max(peak, now)
    return peak


def wait_done(conn: Conn, schema: str, queue: str, n: int) -> None:
    wait_until(
        lambda: states(conn, schema, queue) == {"succeeded": n},
        timeout=90,
        what=f"{n} jobs of {queue} succeeded",
    )


def start_positions(conn: Conn, schema: str, queue: str, group: str) -> list[int]:
    """Where the jobs of ``group`` stand in the order the queue's jobs started."""
    order = conn.execute(
        f'SELECT group_key FROM "{schema}".all_jobs WHERE queue = %s ORDER BY started_at, id',
        (queue,),
    ).fetchall()
    return [i for i, (g,) in enumerate(order) if g == group]


@contextmanager
def sampling(dsn: str, sql: str, params: tuple[Any, ...]) -> Iterator[list[int]]:
    """Run ``sql`` (one integer) every few ms in a thread until the block ends."""
    seen: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        with psycopg.connect(dsn, autocommit=True) as c:
            while not stop.is_set():
                row = c.execute(sql, params).fetchone()
                seen.append(int(row[0]) if row else 0)
                stop.wait(0.005)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join(5)


def test_max_running_holds_across_three_racing_workers(
    qapp: App, conn: Conn, schema: str, pg_dsn: str, workers: Workers
) -> None:
    qapp.admin.set_limits("gpu", max_running=3)
    for i in range(3):
        workers.start("--queue", "gpu", "--concurrency", "6", *FAST, name=f"w{i}")
    wait_until(lambda: len(workers.registered(conn)) == 3, timeout=20, what="3 workers up")
    running = f"SELECT count(*) FROM \"{schema}\".jobs WHERE queue = 'gpu' AND state = 'running'"
    with sampling(pg_dsn, running, ()) as seen:
        enqueue_sql(conn, schema, 40, "gpu", seconds=0.1)  # all three race for the slots
        wait_done(conn, schema, "gpu", 40)
    assert max(seen) == 3, f"running counts seen: {sorted(set(seen))}"
    assert most_at_once(conn, schema, "gpu") <= 3
    # Lifting the cap lets one worker run its whole concurrency again.
    qapp.admin.set_limits("gpu", max_running=None)
    enqueue_sql(conn, schema, 30, "gpu", seconds=0.3)
    with sampling(pg_dsn, running, ()) as seen:
        wait_done(conn, schema, "gpu", 70)
    assert max(seen) > 3


def test_rate_limit_holds_per_window_across_workers(
    qapp: App, conn: Conn, schema: str, workers: Workers
) -> None:
    qapp.admin.set_limits("mail", rate_limit=4, rate_period=0.5)
    enqueue_sql(conn, schema, 20, "mail")
    for i in range(3):
        workers.start("--queue", "mail", "--concurrency", "8", *FAST, name=f"w{i}")
    wait_done(conn, schema, "mail", 20)
    # started_at is the claim's now(), the same clock the claim's window is computed from
    per_window = conn.execute(
        "SELECT floor(extract(epoch FROM started_at) / 0.5) AS w, count(*) "
        f"FROM \"{schema}\".all_jobs WHERE queue = 'mail' GROUP BY 1 ORDER BY 1"
    ).fetchall()
    counts = [n for _, n in per_window]
    assert max(counts) == 4, per_window
    assert len(counts) >= 5  # 20 jobs at 4 per window need at least 5 windows


def test_a_flooding_tenant_does_not_starve_another(
    conn: Conn, schema: str, workers: Workers
) -> None:
    """Round-robin across group keys: tenant B's 10 jobs, enqueued after tenant A's 300,
    run alongside A's instead of after them."""
    enqueue_sql(conn, schema, 300, "reports", group_key="A", seconds=0.02)
    enqueue_sql(conn, schema, 10, "reports", group_key="B", seconds=0.02)
    for i in range(2):
        workers.start("--queue", "reports", "--concurrency", "4", *FAST, name=f"w{i}")
    wait_done(conn, schema, "reports", 310)
    b_positions = start_positions(conn, schema, "reports", "B")  # B's last must come early
    assert len(b_positions) == 10
    # Strict alternation puts B's last near position 20, and first-come-first-served at
    # 300 or later (starved). Claim batches and timing on a loaded machine move it (61 was
    # seen once in CI): the bound only has to tell "alongside" from "after".
    assert b_positions[-1] < 150, f"B's jobs started at positions {b_positions} of 310"


def test_per_group_cap_holds_while_other_groups_run(
    qapp: App, conn: Conn, schema: str, pg_dsn: str, workers: Workers
) -> None:
    qapp.admin.set_limits("reports", max_running_per_group=2)
    enqueue_sql(conn, schema, 30, "reports", group_key="A", seconds=0.1)
    enqueue_sql(conn, schema, 30, "reports", group_key="B", seconds=0.1)
    enqueue_sql(conn, schema, 6, "reports", seconds=0.1)  # ungrouped: not capped per group
    per_group = (
        f'SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM "{schema}".all_jobs '
        "WHERE queue = 'reports' AND state = 'running' AND group_key IS NOT NULL "
        "GROUP BY group_key) AS g"
    )
    with sampling(pg_dsn, per_group, ()) as seen:
        for i in range(3):
            workers.start("--queue", "reports", "--concurrency", "5", *FAST, name=f"w{i}")
        wait_done(conn, schema, "reports", 66)
    assert max(seen) == 2, sorted(set(seen))
    assert most_at_once(conn, schema, "reports", "A") <= 2
    assert most_at_once(conn, schema, "reports", "B") <= 2
    assert most_at_once(conn, schema, "reports") >= 4  # both groups ran side by side


def test_priority_aging_lets_low_priority_run_under_a_high_priority_stream(
    qapp: App, conn: Conn, schema: str, workers: Workers
) -> None:
    enqueue_sql(conn, schema, 1, "mixed", priority=0)
    (low,) = conn.execute(f'SELECT max(id) FROM "{schema}".all_jobs').fetchone()  # type: ignore[misc]
    stop = threading.Event()

    def high_stream() -> None:
        """Keep at least 3 priority-10 jobs queued at all times."""
        with psycopg.connect(conn.info.dsn, autocommit=True) as c:
            while not stop.is_set():
                (queued,) = c.execute(  # type: ignore[misc]
                    f"SELECT count(*) FROM \"{schema}\".all_jobs WHERE queue = 'mixed' "
                    "AND state = 'queued' AND priority > 0"
                ).fetchone()
                if queued < 3:
                    enqueue_sql(c, schema, 3, "mixed", priority=10, seconds=0.02)
                stop.wait(0.005)

    producer = threading.Thread(target=high_stream, daemon=True)
    producer.start()
    try:
        workers.start("--queue", "mixed", "--concurrency", "1", *FAST)
        wait_until(
            lambda: states(conn, schema, "mixed").get("succeeded", 0) >= 20,
            timeout=30,
            what="the high-priority stream running",
        )

        def low_state() -> str:
            row = conn.execute(f'SELECT state FROM "{schema}".all_jobs WHERE id = %s', (low,))
            return str(row.fetchone()[0])  # type: ignore[index]

        assert low_state() == "queued"  # starved so far: every claim found a 10 first
        qapp.admin.set_limits("mixed", priority_aging=0.2)
        # 10 steps of 0.2 s bring it level with the stream, then it is the oldest there
        wait_until(lambda: low_state() == "succeeded", timeout=15, what="the low job ran")
    finally:
        stop.set()
        producer.join(5)


def test_grouped_jobs_get_a_turn_while_ungrouped_ones_fill_every_batch(
    conn: Conn, schema: str, workers: Workers
) -> None:
    """The fast path (ungrouped jobs) can fill every claim during a long drain; the flow
    claim still gets a share of a batch every second, so grouped jobs enqueued meanwhile
    do not wait for the whole drain."""
    enqueue_sql(conn, schema, 800, "mixed", seconds=0.01)
    workers.start("--queue", "mixed", "--concurrency", "4", *FAST)
    wait_until(
        lambda: states(conn, schema, "mixed").get("succeeded", 0) >= 50,
        timeout=30,
        what="the ungrouped drain under way",
    )
    enqueue_sql(conn, schema, 3, "mixed", group_key="T", seconds=0.01)
    wait_done(conn, schema, "mixed", 803)
    grouped = start_positions(conn, schema, "mixed", "T")
    assert grouped[-1] < 700, f"grouped jobs started at {grouped} of 803"
