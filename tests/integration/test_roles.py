"""Least-privilege roles, with real roles: a producer, a reader and an operator can each do
what they need (Python, CLI, SQL) and nothing more. The worker is tests/worker/test_roles.py."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from pgqueue import App, InvalidJobError, JobSpec
from pgqueue.cli.root import cli
from tests.helpers import arun

Conn = psycopg.Connection[Any]
MakeRole = Callable[..., str]
Denied = psycopg.errors.InsufficientPrivilege
ENV_VARS = ("PGQUEUE_DSN", "DATABASE_URL", "PGQUEUE_SCHEMA", "PGQUEUE_APP")


def run_cli(dsn: str, schema: str, *args: str) -> tuple[int, str]:
    """The command in-process as ``dsn``'s role: (exit code, stdout + stderr). An exception
    that escaped the command (a traceback for a user) fails the test."""
    result = CliRunner(env=dict.fromkeys(ENV_VARS)).invoke(
        cli, ["--dsn", dsn, "--schema", schema, *args]
    )
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"uncaught {result.exception!r}") from result.exception
    return result.exit_code, result.stdout + result.stderr


def denied(dsn: str, sql: str, params: Any = None) -> bool:
    """Whether ``sql`` run as ``dsn``'s role fails for lack of a privilege."""
    with psycopg.connect(dsn, autocommit=True) as c:
        try:
            c.execute(sql, params)
        except Denied:
            return True
    return False


def row(conn: Conn, schema: str, job_id: int) -> dict[str, Any]:
    cur = conn.execute(f'SELECT * FROM "{schema}".all_jobs WHERE id = %s', (job_id,))
    values = cur.fetchone()
    assert values is not None and cur.description is not None
    return dict(zip([c.name for c in cur.description], values, strict=True))


def finish(conn: Conn, schema: str, job_id: int, state: str = "failed") -> None:
    """As the owner: end a job as a worker would have (failed or cancelled)."""
    conn.execute(
        f'UPDATE "{schema}".jobs SET state = %s, finished_at = now(), attempt = 1 WHERE id = %s',
        (state, job_id),
    )


# -- producer ----------------------------------------------------------------------------------


def test_producer_enqueues_every_way(make_role: MakeRole, schema: str, conn: Conn) -> None:
    dsn = make_role("producer")
    app = App(dsn, schema=schema, strict_tasks=False)
    try:
        # the NOTIFY trigger fires for a producer (a trigger needs no EXECUTE on its function)
        conn.execute(f'LISTEN "{schema}_jobs"')
        ids = [app.enqueue("t.plain", [1])]
        heard = [n.payload for n in conn.notifies(timeout=5, stop_after=1)]
        assert heard == ["default"]
        ids += app.enqueue_many([JobSpec("t.many", [i]) for i in range(3)])  # COPY
        ids += app.enqueue_batch("t.batch", [{"i": i} for i in range(4)])  # COPY, uniform
        ids += app.enqueue_many([JobSpec("t.later", delay=60)])  # jsonb path
        # transactional enqueue on the app's own psycopg connection (COPY inside it too)
        with psycopg.connect(dsn) as own:
            ids.append(app.enqueue("t.tx", connection=own))
            ids += app.enqueue_many([JobSpec("t.tx_many", [i]) for i in range(2)], connection=own)
            ids += app.enqueue_batch("t.tx_batch", [[1], [2]], connection=own)
        with psycopg.connect(dsn) as own:
            rolled = app.enqueue("t.rolled_back", connection=own)
            own.rollback()

        async def async_path() -> list[int]:
            one = await app.enqueue_async("t.async")
            async with await psycopg.AsyncConnection.connect(dsn) as aconn:
                many = await app.enqueue_many_async([JobSpec("t.acopy")] * 2, connection=aconn)
            return [one, *many]

        ids += arun(app, async_path())
        assert len(set(ids)) == len(ids) == 17
        assert all(app.job(i).state() == "queued" for i in ids)
        assert conn.execute(
            f'SELECT count(*) FROM "{schema}".jobs WHERE id = %s', (rolled,)
        ).fetchone() == (0,)
    finally:
        app.close()


def test_producer_unique_jobs_and_dependencies(
    make_role: MakeRole, schema: str, conn: Conn, caplog: pytest.LogCaptureFixture
) -> None:
    dsn = make_role("producer")
    app = App(dsn, schema=schema, strict_tasks=False)
    try:
        first = app.enqueue("t.sync", kwargs={"v": 1}, dedupe_key="k")
        assert app.enqueue("t.sync", kwargs={"v": 2}, dedupe_key="k") == first
        # replace: the queued holder takes the new arguments, through enqueue_replacing
        assert app.enqueue("t.sync", kwargs={"v": 3}, dedupe_key="k", replace=True) == first
        assert row(conn, schema, first)["kwargs"] == {"v": 3}
        # in the caller's transaction too
        with psycopg.connect(dsn) as own:
            again = app.enqueue(
                "t.sync", kwargs={"v": 4}, dedupe_key="k", replace=True, connection=own
            )
        assert again == first and row(conn, schema, first)["kwargs"] == {"v": 4}
        # unique_for: a holder that finished recently counts (read through all_jobs)
        finish(conn, schema, first)
        assert app.enqueue("t.sync", dedupe_key="k", unique_for=3600) == first
        assert app.enqueue("t.sync", dedupe_key="k", unique_for=3600, replace=True) == first
        fresh = app.enqueue("t.sync", dedupe_key="k")
        assert fresh != first
        # after=: waiting for an unfinished job, cancelled after a failed one
        waiting = app.enqueue("t.after", after=[fresh])
        doomed = app.enqueue("t.after", after=[first])
        with psycopg.connect(dsn) as own:
            in_tx = app.enqueue("t.after", after=fresh, connection=own)
        assert [app.job(i).state() for i in (waiting, doomed, in_tx)] == [
            "waiting",
            "cancelled",
            "waiting",
        ]
        with pytest.raises(InvalidJobError, match="does not exist"):
            app.enqueue("t.after", after=[10**12])
    finally:
        app.close()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_producer_cli_and_sql(make_role: MakeRole, schema: str, conn: Conn) -> None:
    dsn = make_role("producer")
    code, out = run_cli(dsn, schema, "enqueue", "t.cli", "--args", "[1]")
    assert code == 0, out
    cli_id = int(out.strip())
    code, out = run_cli(dsn, schema, "enqueue", "t.cli", "--dedupe-key", "c", "--replace")
    assert code == 0, out
    with psycopg.connect(dsn, autocommit=True) as c:
        sql_id = c.execute(f"SELECT \"{schema}\".enqueue('t.sql', '{{\"a\": 1}}')").fetchone()
        dep = c.execute(
            f"SELECT \"{schema}\".enqueue('t.sql', depends_on => ARRAY[%s::bigint])", (cli_id,)
        ).fetchone()
        # what the Python producer runs when a dependency finished meanwhile (definer)
        c.execute(f'SELECT "{schema}".resolve_dependents(ARRAY[%s::bigint])', (cli_id,))
    assert sql_id is not None and dep is not None
    assert row(conn, schema, sql_id[0])["kwargs"] == {"a": 1}
    assert row(conn, schema, dep[0])["state"] == "waiting"


def test_producer_cannot_change_or_steer_jobs(make_role: MakeRole, schema: str, conn: Conn) -> None:
    dsn = make_role("producer")
    s = f'"{schema}"'
    app = App(dsn, schema=schema, strict_tasks=False)
    try:
        job_id = app.enqueue("t.x", dedupe_key="mine")
        finish(conn, schema, job_id)
        assert denied(dsn, f"UPDATE {s}.jobs SET args = '[1]'")
        assert denied(dsn, f"UPDATE {s}.jobs SET state = 'queued' WHERE id = %s", (job_id,))
        assert denied(dsn, f"DELETE FROM {s}.jobs")
        assert denied(dsn, f"DELETE FROM {s}.succeeded_jobs")
        assert denied(dsn, f"SELECT id FROM {s}.jobs FOR UPDATE")  # nor lock (claim) them
        assert denied(dsn, f"INSERT INTO {s}.jobs (task, result) VALUES ('t.x', '1')")
        for call in (
            f"SELECT {s}.retry_job({job_id})",
            f"SELECT {s}.cancel_job({job_id})",
            f"SELECT {s}.pause_queue('default')",
            f"SELECT {s}.prune_jobs(interval '0')",
            f"SELECT * FROM {s}.queue_stats",
            f"SELECT * FROM {s}.workers",
        ):
            assert denied(dsn, call), call
        with pytest.raises(Denied):
            app.admin.retry([job_id])
        code, out = run_cli(dsn, schema, "jobs", "cancel", str(job_id))
        assert code == 1 and "permission denied" in out and "pgqueue grant" in out
        assert row(conn, schema, job_id)["state"] == "failed"
    finally:
        app.close()


# -- worker (what it can do: tests/worker/test_roles.py) ----------------------------------------


def test_worker_cannot_steer_or_reconfigure(make_role: MakeRole, schema: str, conn: Conn) -> None:
    dsn = make_role("worker")
    s = f'"{schema}"'
    conn.execute(f"SELECT {s}.pause_queue('q')")
    for sql in (
        f"SELECT {s}.retry_job(1)",
        f"SELECT {s}.retry_failed()",
        f"SELECT {s}.cancel_job(1)",
        f"SELECT {s}.resume_queue('q')",
        f"SELECT {s}.set_queue_limits('q', max_running => 1)",
        f"SELECT {s}.prune_jobs(interval '0')",
        f"UPDATE {s}.queues SET paused_at = NULL",
        f"UPDATE {s}.queues SET max_running = 1",
        f"INSERT INTO {s}.queues (name) VALUES ('other')",
        f"DELETE FROM {s}.queues",
        f"SELECT * FROM {s}.queue_stats",
        f"TRUNCATE {s}.jobs",
        f"ALTER TABLE {s}.jobs ADD COLUMN x int",
    ):
        assert denied(dsn, sql), sql
    assert conn.execute(f"SELECT paused_at IS NOT NULL FROM {s}.queues").fetchone() == (True,)


# -- reader -----------------------------------------------------------------------------------


def test_reader_sees_everything_and_changes_nothing(
    make_role: MakeRole, schema: str, conn: Conn, app: App
) -> None:
    app.strict_tasks = False
    job_id = app.enqueue("t.read", kwargs={"x": 1}, queue="reads")
    dsn = make_role("reader")
    for args in (
        ("status",),
        ("status", "--json"),
        ("jobs", "list"),
        ("jobs", "list", "--queue", "reads", "--state", "queued"),
        ("jobs", "show", str(job_id)),
        ("workers",),
        ("periodic",),
    ):
        code, out = run_cli(dsn, schema, *args)
        assert code == 0, (args, out)
    assert "reads" in run_cli(dsn, schema, "status")[1]
    s = f'"{schema}"'
    with psycopg.connect(dsn, autocommit=True) as c:
        for view in ("queue_stats", "running_jobs", "dead_jobs", "all_jobs", "workers"):
            c.execute(f"SELECT * FROM {s}.{view}").fetchall()
    code, out = run_cli(dsn, schema, "enqueue", "t.read")
    assert code == 1 and "permission denied" in out
    reader_app = App(dsn, schema=schema, strict_tasks=False)
    try:
        with pytest.raises(Denied):
            reader_app.enqueue("t.read")
        with pytest.raises(Denied):
            reader_app.enqueue_batch("t.read", [[1]])
        assert reader_app.job(job_id).state() == "queued"
    finally:
        reader_app.close()
    assert denied(dsn, f"SELECT {s}.enqueue('t.read')")
    assert denied(dsn, f"SELECT {s}.retry_job({job_id})")
    assert denied(dsn, f"UPDATE {s}.jobs SET priority = 1")
    assert denied(dsn, f"DELETE FROM {s}.workers")
    assert conn.execute(f"SELECT count(*) FROM {s}.all_jobs").fetchone() == (1,)


# -- operator ---------------------------------------------------------------------------------


def test_operator_steers_through_the_cli_and_python(
    make_role: MakeRole, schema: str, conn: Conn, app: App
) -> None:
    app.strict_tasks = False
    failed, queued, old, other = (app.enqueue("t.op", queue="ops") for _ in range(4))
    finish(conn, schema, failed)
    finish(conn, schema, old, "cancelled")
    finish(conn, schema, other)
    dsn = make_role("operator")
    for args in (
        ("jobs", "retry", str(failed)),
        ("jobs", "cancel", str(queued)),
        ("queues", "pause", "ops"),
        ("queues", "set", "ops", "--max-running", "3", "--rate", "10/s"),
        ("queues", "resume", "ops"),
        ("status",),
        ("jobs", "list", "--state", "cancelled"),
        ("prune", "--older-than", "0s", "--state", "cancelled"),
    ):
        code, out = run_cli(dsn, schema, *args)
        assert code == 0, (args, out)
    assert row(conn, schema, failed)["state"] == "queued"
    assert (
        conn.execute(
            f'SELECT id FROM "{schema}".all_jobs WHERE state = %s', ("cancelled",)
        ).fetchall()
        == []
    )  # the cancelled job, then the old one: pruned
    assert conn.execute(
        f'SELECT max_running, rate_limit, paused_at FROM "{schema}".queues WHERE name = %s',
        ("ops",),
    ).fetchone() == (3, 10, None)
    operator_app = App(dsn, schema=schema, strict_tasks=False)
    try:
        assert operator_app.admin.retry_failed(queue="ops") == 1
        operator_app.admin.pause("ops")
        assert operator_app.admin.queues()[0]["paused"] is True
        assert operator_app.admin.prune(3600) == 0
        with pytest.raises(Denied):
            operator_app.enqueue("t.op")
    finally:
        operator_app.close()
    assert row(conn, schema, other)["state"] == "queued"


def test_operator_writes_only_through_the_functions(
    make_role: MakeRole, schema: str, conn: Conn, app: App
) -> None:
    app.strict_tasks = False
    job_id = app.enqueue("t.op")
    dsn = make_role("operator")
    s = f'"{schema}"'
    for sql in (
        f"UPDATE {s}.jobs SET state = 'running'",
        f"DELETE FROM {s}.jobs",
        f"DELETE FROM {s}.succeeded_jobs",
        f"INSERT INTO {s}.jobs (task) VALUES ('t.op')",
        f"SELECT {s}.enqueue('t.op')",
        f"UPDATE {s}.queues SET paused_at = now()",
        f"INSERT INTO {s}.workers (id, host, pid, queues, concurrency) "
        "VALUES ('x', 'h', 1, '{}', 1)",
        f"SELECT id FROM {s}.jobs FOR UPDATE SKIP LOCKED",  # a claim
        f"SELECT {s}.resolve_dependents()",
    ):
        assert denied(dsn, sql), sql
    assert row(conn, schema, job_id)["state"] == "queued"
