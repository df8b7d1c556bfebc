"""Migrations: idempotent, concurrent-safe, exactly the schema the code expects."""

from __future__ import annotations

import os
import subprocess
import sys
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
}
JOBS_INDEXES = {
    "jobs_pkey",
    "jobs_claim_idx",
    "jobs_lease_idx",
    "jobs_dedupe_key_idx",
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
    assert conn.execute(f'SELECT version_num FROM "{s}".alembic_version').fetchall() == [
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
        f'SELECT count(*) FROM "{unmigrated_schema}".alembic_version'
    ).fetchone() == (1,)


# -- the schema the code expects -------------------------------------------------------------


def test_every_query_prepares_and_plans_against_the_migrated_schema(
    pg_dsn: str, schema: str
) -> None:
    """Parse (PREPARE) resolves every table, column, function and type a query names; the
    plan (EXPLAIN EXECUTE, never run) also finds ON CONFLICT's arbiter index. A query that
    needs something the migration lacks fails here, named."""
    checked, failures = [], []
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        for i, (name, sql) in enumerate(sorted(queries(schema).items())):
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
    assert len(checked) == len(queries(schema)) >= 10


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
    assert "WHERE (state = 'queued'::text)" in indexes["jobs_claim_idx"]
    assert "WHERE (state = 'running'::text)" in indexes["jobs_lease_idx"]
    assert indexes["jobs_dedupe_key_idx"].startswith("CREATE UNIQUE INDEX")
    assert "dedupe_key IS NOT NULL" in indexes["jobs_dedupe_key_idx"]


def test_other_objects_exist(conn: Conn, schema: str) -> None:
    def regclass(name: str) -> bool:
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f'"{schema}".{name}',))
        return bool(row.fetchone() == (True,))

    assert all(regclass(n) for n in ("jobs", "workers", "queue_stats", "alembic_version"))
    assert conn.execute(
        "SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", (f'"{schema}".queue_stats',)
    ).fetchone() == ("v",)
    assert conn.execute(
        "SELECT count(*) FROM pg_proc WHERE proname = 'enqueue' "
        "AND pronamespace = to_regnamespace(%s)",
        (f'"{schema}"',),
    ).fetchone() == (1,)
    assert conn.execute(
        "SELECT count(*) FROM pg_trigger WHERE tgname = 'jobs_notify_insert' "
        "AND tgrelid = to_regclass(%s)",
        (f'"{schema}".jobs',),
    ).fetchone() == (1,)
    view_cols = [
        r[0]
        for r in conn.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = 'queue_stats' ORDER BY ordinal_position",
            (schema,),
        )
    ]
    assert view_cols == ["queue", "state", "jobs", "oldest_age_seconds"]


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


@pytest.mark.parametrize("command", [["status"], ["enqueue", "some.task"]])
def test_commands_on_an_older_revision(
    pg_dsn: str, schema: str, conn: Conn, command: list[str]
) -> None:
    conn.execute(f'UPDATE "{schema}".alembic_version SET version_num = %s', ("0000",))
    code, out, err = run_cli("--dsn", pg_dsn, "--schema", schema, *command)
    _assert_one_line_migrate_error(code, out, err)
    assert "0000" in err
    assert conn.execute(f'SELECT count(*) FROM "{schema}".jobs').fetchone() == (0,)


def test_api_in_a_callers_transaction_on_an_unmigrated_schema(
    pg_dsn: str, unmigrated_schema: str, schema: str, conn: Conn
) -> None:
    """The check must not abort the caller's transaction (no error from a missing table)."""
    conn.execute(f'UPDATE "{schema}".alembic_version SET version_num = %s', ("0000",))
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
    assert f"VALUES ('{HEAD_REVISION}')" in out
    assert out.strip().startswith("BEGIN;") and out.strip().endswith("COMMIT;")
    assert not schema_exists(conn, unmigrated_schema)


def test_migrate_sql_output_applies_and_works(
    pg_dsn: str, unmigrated_schema: str, conn: Conn
) -> None:
    conn.execute(upgrade_sql(unmigrated_schema).encode())
    assert current_revision(pg_dsn, unmigrated_schema) == HEAD_REVISION
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="got number"):
        conn.execute(f'SELECT "{unmigrated_schema}".enqueue(%s, %s::jsonb)', ("t", "1"))
