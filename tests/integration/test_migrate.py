"""Migrations: idempotent, concurrent-safe, exactly the schema the code expects."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import pq

from pgqueue import App, SchemaNotMigrated
from pgqueue.cli.root import cli
from pgqueue.migrate import HEAD_REVISION, current_revision, head_revision, upgrade, upgrade_sql
from pgqueue.sql import queries
from tests.helpers import positional, wait_until

Conn = psycopg.Connection[Any]

#: The real command line, as a user runs it (``python -m pgqueue.cli`` is the ``pgqueue`` script).
PGQUEUE = [sys.executable, "-m", "pgqueue.cli"]

JOBS_COLUMNS = {
    "id",
    "queue",
    "task",
    "args",
    "kwargs",
    "state",
    "priority",
    "run_at",
    "attempt",
    "max_attempts",
    "error_count",
    "lost_count",
    "lease_expires_at",
    "worker_id",
    "dedupe_key",
    "errors",
    "result",
    "created_at",
    "started_at",
    "finished_at",
    "cancel_requested_at",
    "group_key",
    "depends_on",
    "progress",  # 0009
    "checkpoint",  # 0009
    "headers",  # 0010
}
JOBS_INDEXES = {
    "jobs_pkey",
    "jobs_claim_idx",
    "jobs_group_claim_idx",
    "jobs_group_running_idx",
    "jobs_lease_idx",
    "jobs_dedupe_key_idx",
    "jobs_dedupe_finished_idx",
    "jobs_depends_on_idx",
    "jobs_waiting_idx",
    "jobs_finished_idx",
}


def clean_env() -> dict[str, str]:
    """The environment without pgqueue's own settings, so only the command line counts."""
    drop = {"PGQUEUE_DSN", "DATABASE_URL", "PGQUEUE_SCHEMA", "PGQUEUE_APP"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def run_cli(*args: str) -> tuple[int, str, str]:
    """Run the click command in-process: (exit code, stdout, stderr). A Python exception that
    escaped the command (which the real script would print as a traceback) fails the test."""
    result = CliRunner(
        env={k: None for k in ("PGQUEUE_DSN", "DATABASE_URL", "PGQUEUE_SCHEMA", "PGQUEUE_APP")}
    ).invoke(cli, args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"uncaught {result.exception!r}") from result.exception
    return result.exit_code, result.stdout, result.stderr


def schema_exists(conn: Conn, schema: str) -> bool:
    row = conn.execute("SELECT to_regnamespace(%s) IS NOT NULL", (f'"{schema}"',)).fetchone()
    return bool(row and row[0])


def test_head_revision_is_what_the_code_expects() -> None:
    assert head_revision() == HEAD_REVISION


def test_migrate_twice_is_a_no_op(pg_dsn: str, unmigrated_schema: str, conn: Conn) -> None:
    s = unmigrated_schema
    assert current_revision(pg_dsn, s) is None
    assert upgrade(pg_dsn, s) == (None, HEAD_REVISION)
    conn.execute(f'SELECT "{s}".enqueue(%s)', ("keep.me",))
    ddl_before = conn.execute(
        "SELECT count(*) FROM pg_class WHERE relnamespace = to_regnamespace(%s)", (f'"{s}"',)
    ).fetchone()
    assert upgrade(pg_dsn, s) == (HEAD_REVISION, HEAD_REVISION)
    ddl_after = conn.execute(
        "SELECT count(*) FROM pg_class WHERE relnamespace = to_regnamespace(%s)", (f'"{s}"',)
    ).fetchone()
    assert ddl_before == ddl_after
    assert conn.execute(f'SELECT version_num FROM "{s}".pgqueue_version').fetchall() == [
        (HEAD_REVISION,)
    ]
    assert conn.execute(f'SELECT task FROM "{s}".jobs').fetchall() == [("keep.me",)]


def test_migrate_cli_reports_what_it_did(pg_dsn: str, unmigrated_schema: str) -> None:
    code, out, err = run_cli("--dsn", pg_dsn, "--schema", unmigrated_schema, "migrate")
    assert (code, err) == (0, "")
    assert f"empty -> {HEAD_REVISION}" in out
    code, out, err = run_cli("--dsn", pg_dsn, "--schema", unmigrated_schema, "migrate")
    assert (code, err) == (0, "")
    assert "up to date" in out


def test_app_migrate(pg_dsn: str, unmigrated_schema: str, conn: Conn) -> None:
    app = App(pg_dsn, schema=unmigrated_schema, strict_tasks=False)
    try:
        with pytest.raises(SchemaNotMigrated):
            app.enqueue("t")
        assert app.migrate() == (None, HEAD_REVISION)
        job_id = app.enqueue("t")
    finally:
        app.close()
    assert conn.execute(f'SELECT id FROM "{unmigrated_schema}".jobs').fetchall() == [(job_id,)]


def test_four_processes_migrate_at_once(pg_dsn: str, unmigrated_schema: str, conn: Conn) -> None:
    cmd = [*PGQUEUE, "--dsn", pg_dsn, "--schema", unmigrated_schema, "migrate"]
    # Hold migrate's advisory lock until all four are queued on it: a real pile-up every run.
    key = f"pgqueue.migrate.{unmigrated_schema}"
    conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (key,))
    procs = [
        subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env()
        )
        for _ in range(4)
    ]
    try:
        wait_until(
            lambda: (
                conn.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                    "AND objid = hashtext(%s)::oid",
                    (key,),
                ).fetchone()
                == (4,)
                or any(p.poll() is not None for p in procs)
            ),
            timeout=60,
            what="four migrate processes waiting on the advisory lock",
        )
    finally:
        conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (key,))
    outputs = [p.communicate(timeout=60) for p in procs]
    for p, (out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, f"exit {p.returncode}: {out}{err}"
        assert "Traceback" not in err
    reports = sorted(out.strip() for out, _ in outputs)
    assert sum("migrated" in r for r in reports) == 1, reports
    assert sum("up to date" in r for r in reports) == 3, reports
    assert current_revision(pg_dsn, unmigrated_schema) == HEAD_REVISION
    assert conn.execute(
        f'SELECT count(*) FROM "{unmigrated_schema}".pgqueue_version'
    ).fetchone() == (1,)


# -- the schema the code expects -------------------------------------------------------------


def test_every_query_prepares_and_plans_against_the_migrated_schema(
    pg_dsn: str, schema: str
) -> None:
    """Parse (PREPARE) resolves every table, column, function and type a query names; the
    plan (EXPLAIN EXECUTE, never run) also finds ON CONFLICT's arbiter index. A query that
    needs something the migration lacks fails here, named."""
    checked, failures = [], []
    # Read only in a schema an older pgqueue set up (its alembic_version, which a schema
    # made by this pgqueue has not): tests below run it on such a schema.
    legacy_only = {"schema_legacy_revision"}
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        for i, (name, sql) in enumerate(sorted(queries(schema).items())):
            if name in legacy_only:
                continue
            stmt = f"pgq_check_{i}"
            res = c.pgconn.prepare(stmt.encode(), positional(sql).encode())
            if res.status != pq.ExecStatus.COMMAND_OK:
                failures.append(f"{name}: {(res.error_message or b'').decode().strip()}")
                continue
            nparams = c.pgconn.describe_prepared(stmt.encode()).nparams
            nulls = "(" + ", ".join(["NULL"] * nparams) + ")" if nparams else ""
            try:
                plan = c.execute(f"EXPLAIN EXECUTE {stmt}{nulls}").fetchall()
                assert plan, name
            except psycopg.Error as exc:
                failures.append(f"{name} (plan): {exc}")
            finally:
                c.execute(f"DEALLOCATE {stmt}")
            checked.append(name)
    assert failures == []
    assert len(checked) == len(queries(schema)) - len(legacy_only) >= 10


def test_jobs_table_columns_and_indexes(conn: Conn, schema: str) -> None:
    columns = {
        r[0]
        for r in conn.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = 'jobs'",
            (schema,),
        )
    }
    assert columns == JOBS_COLUMNS
    indexes = dict(
        conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes "
            "WHERE schemaname = %s AND tablename = 'jobs'",
            (schema,),
        ).fetchall()
    )
    assert set(indexes) == JOBS_INDEXES
    assert "WHERE ((state = 'queued'::text) AND (group_key IS NULL))" in indexes["jobs_claim_idx"]
    assert "WHERE (state = 'running'::text)" in indexes["jobs_lease_idx"]
    assert indexes["jobs_dedupe_key_idx"].startswith("CREATE UNIQUE INDEX")
    assert "dedupe_key IS NOT NULL" in indexes["jobs_dedupe_key_idx"]


def test_other_objects_exist(conn: Conn, schema: str) -> None:
    def relkind(name: str) -> str | None:
        row = conn.execute(
            "SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", (f'"{schema}".{name}',)
        ).fetchone()
        return None if row is None else str(row[0])

    tables = ("jobs", "workers", "queues", "periodic", "pgqueue_version")
    views = ("queue_stats", "running_jobs", "dead_jobs")
    assert {n: relkind(n) for n in tables + views} == {
        **dict.fromkeys(tables, "r"),
        **dict.fromkeys(views, "v"),
    }
    functions = {
        "enqueue": "bigint",
        "retry_job": "boolean",
        "retry_failed": "bigint",
        "cancel_job": "text",
        "pause_queue": "void",
        "resume_queue": "boolean",
        "prune_jobs": "bigint",
        "dependency_state": "text",
        "resolve_dependents": "bigint",
        "set_queue_limits": "void",
    }
    found = conn.execute(
        "SELECT proname, format_type(prorettype, NULL), count(*) OVER (PARTITION BY proname) "
        "FROM pg_proc WHERE pronamespace = to_regnamespace(%s) AND proname = ANY(%s)",
        (f'"{schema}"', list(functions)),
    ).fetchall()
    assert {name: ret for name, ret, _ in found} == functions
    assert all(n == 1 for _, _, n in found)  # one of each, no stray overloads
    assert conn.execute(
        "SELECT count(*) FROM pg_trigger WHERE tgname = 'jobs_notify_insert' "
        "AND tgrelid = to_regclass(%s)",
        (f'"{schema}".jobs',),
    ).fetchone() == (1,)

    def columns(view: str) -> list[str]:
        return [
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
                (schema, view),
            )
        ]

    assert columns("queue_stats") == [
        "queue",
        "queued",
        "scheduled",
        "running",
        "failed",
        "oldest_queued_age_seconds",
        "finished_last_minute",
        "paused",
        "waiting",
        "max_running",
        "max_running_per_group",
        "rate_limit",
        "rate_period",
        "priority_aging",
    ]
    assert columns("running_jobs") == [
        "id",
        "queue",
        "task",
        "worker_id",
        "attempt",
        "max_attempts",
        "started_at",
        "run_seconds",
        "lease_left_seconds",
        "cancel_requested",
        "progress_done",  # 0009
        "progress_total",
        "progress_percent",
        "progress_message",
        "progress_at",
    ]
    assert columns("dead_jobs") == [
        "id",
        "queue",
        "task",
        "attempt",
        "error_count",
        "lost_count",
        "finished_at",
        "last_error_kind",
        "last_error",
    ]
    assert columns("queues") == [
        "name",
        "paused_at",
        "updated_at",
        "max_running",
        "max_running_per_group",
        "rate_limit",
        "rate_period",
        "rate_window_start",
        "rate_window_count",
        "priority_aging",
        "priority_aged_at",
    ]
    assert columns("periodic") == ["name", "schedule", "last_tick", "updated_at"]


# -- unmigrated or old schemas ----------------------------------------------------------------


def _assert_one_line_migrate_error(code: int, out: str, err: str) -> None:
    assert code == 1
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "pgqueue migrate" in lines[0]
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "command", [["status"], ["status", "--json"], ["enqueue", "some.task", "--args", "[1]"]]
)
def test_commands_on_an_unmigrated_schema(
    pg_dsn: str, unmigrated_schema: str, conn: Conn, command: list[str]
) -> None:
    _assert_one_line_migrate_error(
        *run_cli("--dsn", pg_dsn, "--schema", unmigrated_schema, *command)
    )
    assert not schema_exists(conn, unmigrated_schema)  # nothing written, not even the schema


def test_commands_on_an_empty_existing_schema(
    pg_dsn: str, unmigrated_schema: str, conn: Conn
) -> None:
    conn.execute(f'CREATE SCHEMA "{unmigrated_schema}"')
    for command in (["status"], ["enqueue", "t"]):
        _assert_one_line_migrate_error(
            *run_cli("--dsn", pg_dsn, "--schema", unmigrated_schema, *command)
        )


def test_real_script_on_an_unmigrated_schema(pg_dsn: str, unmigrated_schema: str) -> None:
    proc = subprocess.run(
        [*PGQUEUE, "--dsn", pg_dsn, "--schema", unmigrated_schema, "enqueue", "t"],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
        check=False,
    )
    _assert_one_line_migrate_error(proc.returncode, proc.stdout, proc.stderr)


@pytest.mark.parametrize("revision", ["0001", "0000"])
@pytest.mark.parametrize(
    "command",
    [
        ["status"],
        ["enqueue", "some.task"],
        ["jobs", "list"],
        ["queues", "pause", "q"],
        ["prune", "--older-than", "0s"],
    ],
)
def test_commands_on_an_older_revision(
    pg_dsn: str, schema: str, conn: Conn, command: list[str], revision: str
) -> None:
    conn.execute(f'INSERT INTO "{schema}".jobs (task, state, finished_at) VALUES (%s, %s, now())',
                 ("old.done", "succeeded"))  # fmt: skip
    conn.execute(f'UPDATE "{schema}".pgqueue_version SET version_num = %s', (revision,))
    code, out, err = run_cli("--dsn", pg_dsn, "--schema", schema, *command)
    _assert_one_line_migrate_error(code, out, err)
    assert revision in err
    assert conn.execute(f'SELECT task FROM "{schema}".jobs').fetchall() == [("old.done",)]
    assert conn.execute(f'SELECT count(*) FROM "{schema}".queues').fetchone() == (0,)


def _upgrade_to(dsn: str, schema: str, revision: str) -> None:
    """Alembic's upgrade to an older revision than head, as ``pgqueue.migrate`` runs it."""
    from alembic import command
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    from pgqueue.migrate import _config

    engine = create_engine(
        "postgresql+psycopg://", creator=lambda: psycopg.connect(dsn), poolclass=NullPool
    )
    try:
        with engine.begin() as connection:
            command.upgrade(_config(schema, connection=connection), revision)
    finally:
        engine.dispose()


def test_upgrade_from_0001_keeps_jobs_and_fills_the_new_views(
    pg_dsn: str, unmigrated_schema: str, conn: Conn
) -> None:
    s = unmigrated_schema
    _upgrade_to(pg_dsn, s, "0001")
    assert current_revision(pg_dsn, s) == "0001"
    queued = conn.execute(f'SELECT "{s}".enqueue(%s, %s::jsonb, %s)', ("t", "[1]", "emails"))
    queued_id = queued.fetchone()
    conn.execute(f'INSERT INTO "{s}".jobs (task, queue, state, finished_at) VALUES '
                 "('t', 'emails', 'failed', now())")  # fmt: skip
    _assert_one_line_migrate_error(*run_cli("--dsn", pg_dsn, "--schema", s, "status"))

    code, out, err = run_cli("--dsn", pg_dsn, "--schema", s, "migrate")
    assert (code, err) == (0, "")
    assert f"0001 -> {HEAD_REVISION}" in out
    rows = conn.execute(
        f'SELECT id, args, state, cancel_requested_at FROM "{s}".jobs ORDER BY id'
    ).fetchall()
    assert queued_id is not None
    assert rows[0] == (queued_id[0], [1], "queued", None)
    assert [r[2] for r in rows] == ["queued", "failed"]
    assert conn.execute(
        f'SELECT queue, queued, failed, paused FROM "{s}".queue_stats'
    ).fetchall() == [("emails", 1, 1, False)]
    app = App(pg_dsn, schema=s)
    try:
        assert app.admin.retry_failed() == 1
    finally:
        app.close()


def test_upgrade_from_0003_moves_succeeded_jobs_out_of_the_hot_table(
    pg_dsn: str, unmigrated_schema: str, conn: Conn
) -> None:
    """0004: succeeded rows move to succeeded_jobs with every column; the rest stay in
    jobs; all_jobs shows both, and the schema's SQL keeps working on moved jobs."""
    s = unmigrated_schema
    _upgrade_to(pg_dsn, s, "0003")
    conn.execute(
        f"""INSERT INTO "{s}".jobs (task, queue, state, attempt, result, dedupe_key,
                                     started_at, finished_at)
            VALUES ('t', 'q', 'succeeded', 1, '{{"n": 1}}', 'k1', now(), now()),
                   ('t', 'q', 'failed', 3, NULL, NULL, now(), now()),
                   ('t', 'q', 'queued', 0, NULL, NULL, NULL, NULL)"""
    )
    before = conn.execute(f'SELECT * FROM "{s}".jobs ORDER BY id').fetchall()
    code, out, err = run_cli("--dsn", pg_dsn, "--schema", s, "migrate")
    assert (code, err) == (0, "")
    assert f"0003 -> {HEAD_REVISION}" in out
    assert [r[0] for r in conn.execute(f'SELECT state FROM "{s}".jobs ORDER BY id')] == [
        "failed",
        "queued",
    ]
    moved = conn.execute(f'SELECT * FROM "{s}".succeeded_jobs').fetchall()
    # every column, in the same order (0009 appends progress and checkpoint, 0010
    # headers: NULL for these rows)
    before = [(*row, None, None, None) for row in before]
    assert moved == [before[0]]
    assert conn.execute(f'SELECT * FROM "{s}".all_jobs ORDER BY id').fetchall() == before
    done_id = before[0][0]
    assert conn.execute(f'SELECT "{s}".cancel_job(%s)', (done_id,)).fetchone() == ("succeeded",)
    assert conn.execute(f'SELECT "{s}".dependency_state(%s)', ([done_id],)).fetchone() == (
        "queued",
    )
    app = App(pg_dsn, schema=s, strict_tasks=False)
    try:
        assert app.job(done_id).result() == {"n": 1}
        again = app.enqueue("t", dedupe_key="k1", unique_for=3600)
        assert int(again) == done_id  # the moved job still holds its key for unique_for
    finally:
        app.close()


def test_succeeded_jobs_has_the_columns_of_jobs(schema: str, conn: Conn) -> None:
    """all_jobs is jobs UNION ALL succeeded_jobs, and the completion copies a row column
    by column: a migration that adds a column to jobs must add it to succeeded_jobs (and
    to job_complete_fenced) too."""

    def columns(table: str) -> list[tuple[object, ...]]:
        return conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
            (schema, table),
        ).fetchall()

    assert columns("succeeded_jobs") == columns("jobs")
    assert columns("all_jobs") == columns("jobs")
    insert = queries(schema)["job_complete_fenced"]
    copied = insert[insert.index("INSERT INTO") : insert.index("SELECT id, queue")]
    missing = [c for c, _ in columns("jobs") if c not in copied]
    assert missing == ["lease_expires_at"], missing  # a finished job holds no lease


def test_api_in_a_callers_transaction_on_an_unmigrated_schema(
    pg_dsn: str, unmigrated_schema: str, schema: str, conn: Conn
) -> None:
    """The check must not abort the caller's transaction (no error from a missing table)."""
    conn.execute(f'UPDATE "{schema}".pgqueue_version SET version_num = %s', ("0000",))
    for target in (unmigrated_schema, schema):
        app = App(pg_dsn, schema=target, strict_tasks=False)
        with psycopg.connect(pg_dsn) as own:
            with pytest.raises(SchemaNotMigrated, match="pgqueue migrate"):
                app.enqueue("t", connection=own)
            assert own.execute("SELECT 42").fetchone() == (42,)  # still usable
            own.rollback()
        app.close()


# -- migrate --sql -------------------------------------------------------------------------


def test_migrate_sql_prints_ddl_and_writes_nothing(
    pg_dsn: str, unmigrated_schema: str, conn: Conn
) -> None:
    code, out, err = run_cli("--dsn", pg_dsn, "--schema", unmigrated_schema, "migrate", "--sql")
    assert (code, err) == (0, "")
    assert "CREATE TABLE" in out
    assert f'CREATE TABLE "{unmigrated_schema}".jobs' in out
    # the version table is created at the first revision and moved on by each later one
    assert re.findall(r"pgqueue_version \(version_num\) VALUES \('(\d+)'\)", out) == ["0001"]
    moves = re.findall(r"pgqueue_version SET version_num='(\d+)'", out)
    assert moves and moves[-1] == HEAD_REVISION, moves
    assert out.strip().startswith("BEGIN;") and out.strip().endswith("COMMIT;")
    assert not schema_exists(conn, unmigrated_schema)


def test_migrate_sql_output_applies_and_works(
    pg_dsn: str, unmigrated_schema: str, conn: Conn
) -> None:
    conn.execute(upgrade_sql(unmigrated_schema).encode())
    assert current_revision(pg_dsn, unmigrated_schema) == HEAD_REVISION
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="got number"):
        conn.execute(f'SELECT "{unmigrated_schema}".enqueue(%s, %s::jsonb)', ("t", "1"))


def test_0010_lets_existing_producers_write_headers(
    pg_dsn: str, unmigrated_schema: str, conn: Conn
) -> None:
    """A role that could insert jobs before 0010 (a producer: INSERT on some columns)
    may insert the new headers column after it, or its enqueues would fail."""
    s = unmigrated_schema
    _upgrade_to(pg_dsn, s, "0007")
    name = "pgq_role_" + uuid.uuid4().hex[:10]
    conn.execute(f'CREATE ROLE "{name}"')
    try:
        conn.execute(f'GRANT INSERT (queue, task) ON "{s}".jobs TO "{name}"')
        code, _, err = run_cli("--dsn", pg_dsn, "--schema", s, "migrate")
        assert (code, err) == (0, "")
        row = conn.execute(
            "SELECT has_column_privilege(%s, %s, 'headers', 'INSERT')", (name, f'"{s}".jobs')
        ).fetchone()
        assert row == (True,)
    finally:
        conn.execute(f'DROP OWNED BY "{name}"')
        conn.execute(f'DROP ROLE "{name}"')
