"""The done channel and dependency statements, straight in SQL (no worker): every statement
that finishes jobs names them on ``<schema>_done`` (a completion batch in payloads of at
most 300 ids, under PostgreSQL's 8000-byte limit), and the dependency queries stay on
their indexes under the workers' generic plans."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from pgqueue import App
from tests.helpers import generic_plan

Conn = psycopg.Connection[Any]
BIG = 9_000_000_000_000_000_000  # ids of 19 digits: the longest a payload can get


def running_rows(conn: Conn, schema: str, ids: list[int], **extra: Any) -> None:
    """Jobs claimed by worker 'w' (attempt 1), written directly."""
    columns = ", ".join(extra)
    values = "".join(f", %({k})s" for k in extra)
    conn.cursor().executemany(
        f'INSERT INTO "{schema}".jobs (id, task, state, attempt, worker_id, '
        f"lease_expires_at{', ' + columns if columns else ''}) "
        f"VALUES (%(id)s, 'noop', 'running', 1, 'w', now() + interval '30 s'{values})",
        [{"id": i, **extra} for i in ids],
    )


def told(listener: Conn) -> list[str]:
    return [n.payload for n in listener.notifies(timeout=0.3)]


@pytest.fixture
def listener(pg_dsn: str, schema: str) -> Any:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'LISTEN "{schema}_done"')
        yield conn


def test_a_completion_batch_is_told_in_chunks_of_300(
    app: App, conn: Conn, schema: str, listener: Conn
) -> None:
    ids = [BIG + i for i in range(700)]
    running_rows(conn, schema, ids)
    done = json.dumps({str(i): [1, i % 7] for i in ids})
    rows = conn.execute(
        app.query("job_complete_fenced"), {"ids": ids, "worker_id": "w", "done": done}
    ).fetchall()
    assert sorted(r[0] for r in rows) == ids
    payloads = told(listener)
    assert sorted(len(p.split(",")) for p in payloads) == [100, 300, 300]
    assert max(len(p.encode()) for p in payloads) < 8000
    assert sorted(int(x) for p in payloads for x in p.split(",")) == ids
    # a batch whose leases were all lost tells nothing
    conn.execute(app.query("job_complete_fenced"), {"ids": ids, "worker_id": "w", "done": done})
    assert told(listener) == []


def test_every_way_a_job_ends_is_told(app: App, conn: Conn, schema: str, listener: Conn) -> None:
    running_rows(conn, schema, [1, 2, 3, 4, 5, 6])
    fail = {"worker_id": "w", "attempt": 1, "backoff": 0.0, "error": '{"kind": "error"}'}
    # a failure that will be retried ends nothing; a final one does
    for job_id, final, state in [(1, False, "queued"), (2, True, "failed")]:
        cur = conn.execute(app.query("job_fail_fenced"), {**fail, "id": job_id, "final": final})
        assert [r[0] for r in cur] == [state]
    assert told(listener) == ["2"]
    cancel = {"id": 3, "attempt": 1, "worker_id": "w", "message": "asked"}
    conn.execute(app.query("job_cancel_fenced"), cancel)
    assert told(listener) == ["3"]
    # shutdown: a job whose cancellation was asked ends cancelled, the other goes back
    conn.execute(f'UPDATE "{schema}".jobs SET cancel_requested_at = now() WHERE id = 4')
    rows = conn.execute(
        app.query("job_release_fenced"), {"ids": [4, 5], "attempts": [1, 1], "worker_id": "w"}
    ).fetchall()
    assert sorted((r[0], r[2]) for r in rows) == [(4, "cancelled"), (5, "queued")]
    assert told(listener) == ["4"]
    # the reaper: a lost job out of attempts ends failed
    conn.execute(
        f"UPDATE \"{schema}\".jobs SET max_attempts = 1, lease_expires_at = now() - interval '1s'"
        " WHERE id = 6"
    )
    rows = conn.execute(app.query("job_reap_expired"), {"key": "k", "limit": 10}).fetchall()
    assert [(r[0], r[1]) for r in rows] == [(6, "failed")]
    assert told(listener) == ["6"]
    # cancel_job() of a queued job (migration 0003) tells it too
    conn.execute(app.query("job_cancel"), {"id": 5})
    assert told(listener) == ["5"]


def test_resolve_dependents_statements(app: App, conn: Conn, schema: str, listener: Conn) -> None:
    def make(state: str, deps: list[int] | None = None) -> int:
        row = conn.execute(
            f'INSERT INTO "{schema}".jobs (task, state, depends_on) VALUES (%s, %s, %s) '
            "RETURNING id",
            ("noop", state, deps),
        ).fetchone()
        assert row is not None
        return int(row[0])

    def state(job_id: int) -> str:
        row = conn.execute(f'SELECT state FROM "{schema}".all_jobs WHERE id = %s', (job_id,))
        return str(row.fetchone()[0])  # type: ignore[index]

    a, b = make("running"), make("running")
    child = make("waiting", [a, b])
    grandchild = make("waiting", [child])
    resolve = app.query("job_resolve_dependents")
    # nothing waits for these: the guard answers 0 without calling resolve_dependents
    assert conn.execute(resolve, {"ids": [999]}).fetchone() == (0,)
    conn.execute(f"UPDATE \"{schema}\".jobs SET state = 'succeeded' WHERE id = {a}")
    assert conn.execute(resolve, {"ids": [a]}).fetchone() == (0,)  # b still runs
    assert state(child) == "waiting"
    conn.execute(f"UPDATE \"{schema}\".jobs SET state = 'failed' WHERE id = {b}")
    assert conn.execute(resolve, {"ids": [b]}).fetchone() == (2,)  # child, then grandchild
    assert (state(child), state(grandchild)) == ("cancelled", "cancelled")
    assert sorted(told(listener)) == sorted([str(child), str(grandchild)])
    # job_resolve_new: only for fresh waiting jobs that are in fact ready
    ready = make("waiting", [a])
    not_ready = make("waiting", [make("queued")])
    assert conn.execute(app.query("job_resolve_new"), {"ids": [not_ready]}).fetchone() == (0,)
    assert conn.execute(app.query("job_resolve_new"), {"ids": [ready, not_ready]}).fetchone() == (
        1,
    )
    assert (state(ready), state(not_ready)) == ("queued", "waiting")


@pytest.mark.parametrize(
    "name, args, index",
    [
        ("job_resolve_dependents", "ARRAY[1,2,3]::bigint[]", "jobs_depends_on_idx"),
        ("job_dependencies_sweep", "'k', 1000", "jobs_waiting_idx"),
        ("job_resolve_new", "ARRAY[1,2,3]::bigint[]", "jobs_pkey"),
    ],
)
def test_dependency_queries_stay_on_their_indexes(
    app: App, conn: Conn, schema: str, name: str, args: str, index: str
) -> None:
    """Workers plan once (force_generic_plan): the completer's per-batch check and the
    sweep must not read the whole jobs table."""
    conn.execute(
        f'INSERT INTO "{schema}".jobs (task, state, finished_at) '
        "SELECT 'noop', 'succeeded', now() FROM generate_series(1, 5000)"
    )
    conn.execute(
        f'INSERT INTO "{schema}".jobs (task, state, depends_on) '
        "SELECT 'noop', 'waiting', ARRAY[g::bigint] FROM generate_series(1, 2000) AS g"
    )
    conn.execute(f'ANALYZE "{schema}".jobs')
    plan = generic_plan(conn, app.query(name), args)
    assert index in plan, plan
    assert "Seq Scan on jobs" not in plan, plan
