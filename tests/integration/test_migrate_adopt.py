"""Adopting pgqueue in an existing database: pgqueue's version table has a name of its own
(pgqueue_version), an older pgqueue's alembic_version is moved over by migrate, a schema
holding objects pgqueue did not create is refused (by migrate and every command, naming
them, never "run pgqueue migrate"), `public` is refused, and every migrate failure is one
line with exit 1 that changes nothing."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from pgqueue import App, ConfigurationError, SchemaNotMigrated
from pgqueue.migrate import (
    HEAD_REVISION,
    LEGACY_REVISIONS,
    VERSION_TABLE,
    current_revision,
    upgrade,
)
from tests.integration.test_cli import assert_one_line_error
from tests.integration.test_migrate import PGQUEUE, clean_env, run_cli, schema_exists

Conn = psycopg.Connection[Any]


def old_pgqueue_migrate(dsn: str, schema: str, revision: str) -> None:
    """What an older pgqueue's migrate did: pgqueue's revisions, with alembic's default
    version table (alembic_version) in the pgqueue schema."""
    from alembic import command
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    from pgqueue.migrate import _config

    engine = create_engine(
        "postgresql+psycopg://", creator=lambda: psycopg.connect(dsn), poolclass=NullPool
    )
    try:
        with engine.begin() as connection:
            cfg = _config(schema, connection=connection, version_table="alembic_version")
            command.upgrade(cfg, revision)
    finally:
        engine.dispose()


def relations(conn: Conn, schema: str) -> set[str]:
    rows = conn.execute(
        "SELECT relname FROM pg_class WHERE relnamespace = to_regnamespace(%s)", (f'"{schema}"',)
    )
    return {r[0] for r in rows}


def version_rows(conn: Conn, schema: str, table: str) -> list[tuple[Any, ...]]:
    return conn.execute(f'SELECT version_num FROM "{schema}".{table}').fetchall()


# -- pgqueue's own version table ------------------------------------------------------------


def test_the_version_table_is_pgqueue_version(conn: Conn, schema: str) -> None:
    assert VERSION_TABLE == "pgqueue_version"
    assert version_rows(conn, schema, "pgqueue_version") == [(HEAD_REVISION,)]
    assert "alembic_version" not in relations(conn, schema)
    assert "pgqueue_version_pkc" in relations(conn, schema)


@pytest.mark.parametrize("revision", sorted(LEGACY_REVISIONS)[-2:])
def test_an_older_pgqueues_version_table_is_moved_by_migrate(
    pg_dsn: str, unmigrated_schema: str, conn: Conn, revision: str
) -> None:
    s = unmigrated_schema
    old_pgqueue_migrate(pg_dsn, s, revision)
    conn.execute(f'SELECT "{s}".enqueue(%s)', ("kept.job",))
    assert version_rows(conn, s, "alembic_version") == [(revision,)]
    # the new code: not usable until migrate, and it says so (migrate can fix it)
    code, out, err = run_cli("--dsn", pg_dsn, "--schema", s, "status")
    assert_one_line_error(code, out, err, says=f"set up by an older pgqueue (revision {revision}")
    assert "run `pgqueue migrate`" in err

    code, out, err = run_cli("--dsn", pg_dsn, "--schema", s, "migrate")
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == (
        f"schema '{s}': moved an older pgqueue's version table (alembic_version) to pgqueue_version"
    )
    assert f"{revision} -> {HEAD_REVISION}" in out
    names = relations(conn, s)
    assert {"pgqueue_version", "pgqueue_version_pkc"} <= names
    assert not names & {"alembic_version", "alembic_version_pkc"}
    assert version_rows(conn, s, "pgqueue_version") == [(HEAD_REVISION,)]
    assert conn.execute(f'SELECT task FROM "{s}".jobs').fetchall() == [("kept.job",)]

    code, out, err = run_cli("--dsn", pg_dsn, "--schema", s, "status")
    assert (code, err) == (0, "")
    assert "default" in out  # the kept job's queue
    code, out, err = run_cli("--dsn", pg_dsn, "--schema", s, "migrate")
    assert (code, err, out.strip()) == (
        0,
        "",
        f"schema '{s}' is up to date (revision {HEAD_REVISION})",
    )


def test_concurrent_migrates_of_an_older_install_move_it_once(
    pg_dsn: str, unmigrated_schema: str, conn: Conn
) -> None:
    old_pgqueue_migrate(pg_dsn, unmigrated_schema, "0003")
    cmd = [*PGQUEUE, "--dsn", pg_dsn, "--schema", unmigrated_schema, "migrate"]
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=clean_env())
        for _ in range(3)
    ]  # fmt: skip
    outputs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    assert sum("moved an older pgqueue's version table" in out for out, _ in outputs) == 1
    assert current_revision(pg_dsn, unmigrated_schema) == HEAD_REVISION


# -- someone else's schema --------------------------------------------------------------------


@pytest.fixture
def foreign(pg_dsn: str) -> Iterator[tuple[str, Conn]]:
    """An existing schema (dropped at the end) and a connection to fill it with."""
    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        c.execute(f'CREATE SCHEMA "{name}"')
        yield name, c
        c.execute(f'DROP SCHEMA "{name}" CASCADE')


FOREIGN = {
    "another app's jobs table": ("CREATE TABLE {s}.jobs (id serial PRIMARY KEY, title text)",
                                 "jobs, jobs_id_seq"),
    "another tool's alembic_version": (
        "CREATE TABLE {s}.alembic_version (version_num varchar(32) PRIMARY KEY);"
        "INSERT INTO {s}.alembic_version VALUES ('3f2a9c1b7d4e')", "alembic_version"),
    "an alembic_version at a pgqueue-like revision, without pgqueue's tables": (
        "CREATE TABLE {s}.alembic_version (version_num varchar(32) PRIMARY KEY);"
        "INSERT INTO {s}.alembic_version VALUES ('0002'); CREATE TABLE {s}.users (id int)",
        "alembic_version, users"),
    "a view": ("CREATE VIEW {s}.report AS SELECT 1 AS one", "report"),
    "a function": ("CREATE FUNCTION {s}.answer() RETURNS int LANGUAGE sql AS 'SELECT 42'",
                   "answer"),
    "a sequence": ("CREATE SEQUENCE {s}.invoice_no", "invoice_no"),
    "an enum type": ("CREATE TYPE {s}.mood AS ENUM ('ok')", "mood"),
    "a domain": ("CREATE DOMAIN {s}.positive AS int CHECK (VALUE > 0)", "positive"),
    "many tables": (";".join(f"CREATE TABLE {{s}}.t{i} (x int)" for i in range(7)),
                    "t0, t1, t2, t3, t4 and 2 more"),
}  # fmt: skip


@pytest.mark.parametrize(("ddl", "names"), FOREIGN.values(), ids=list(FOREIGN))
def test_migrate_refuses_a_schema_holding_objects_pgqueue_did_not_create(
    pg_dsn: str, foreign: tuple[str, Conn], ddl: str, names: str
) -> None:
    s, c = foreign
    c.execute(ddl.replace("{s}", f'"{s}"'))
    before = relations(c, s)
    for command in (["migrate"], ["status"], ["enqueue", "t"], ["jobs", "list"]):
        code, out, err = run_cli("--dsn", pg_dsn, "--schema", s, *command)
        assert_one_line_error(
            code, out, err, says=f"schema '{s}' holds objects pgqueue did not create ({names})"
        )
        assert "choose another schema for pgqueue (--schema" in err
        assert "pgqueue migrate" not in err  # it cannot help
    assert relations(c, s) == before  # nothing written


def test_the_app_refuses_a_foreign_schema_too(pg_dsn: str, foreign: tuple[str, Conn]) -> None:
    s, c = foreign
    c.execute(f'CREATE TABLE "{s}".jobs (id int)')
    app = App(pg_dsn, schema=s, strict_tasks=False)
    try:
        with pytest.raises(ConfigurationError, match="did not create") as info:
            app.enqueue("t")
        assert not isinstance(info.value, SchemaNotMigrated)
        with pytest.raises(ConfigurationError, match="did not create"):
            app.migrate()
        with psycopg.connect(pg_dsn) as own:  # in a caller's transaction: not aborted
            with pytest.raises(ConfigurationError, match="did not create"):
                app.enqueue("t", connection=own)
            assert own.execute("SELECT 42").fetchone() == (42,)
    finally:
        app.close()


def test_a_fresh_empty_schema_is_adopted(pg_dsn: str, foreign: tuple[str, Conn]) -> None:
    s, c = foreign
    assert upgrade(pg_dsn, s) == (None, HEAD_REVISION)
    assert version_rows(c, s, "pgqueue_version") == [(HEAD_REVISION,)]


def test_a_newer_revision_says_upgrade_pgqueue(pg_dsn: str, schema: str, conn: Conn) -> None:
    conn.execute(f'UPDATE "{schema}".pgqueue_version SET version_num = %s', ("9999",))
    for command in (["status"], ["migrate"]):
        code, out, err = run_cli("--dsn", pg_dsn, "--schema", schema, *command)
        assert_one_line_error(code, out, err, says="is at revision 9999, newer than this pgqueue")
        assert "upgrade pgqueue" in err and "pgqueue migrate" not in err
    assert version_rows(conn, schema, "pgqueue_version") == [("9999",)]


# -- public ----------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["migrate"], ["status"], ["enqueue", "t"]], ids=" ".join)
def test_public_is_refused(pg_dsn: str, conn: Conn, command: list[str]) -> None:
    before = relations(conn, "public")
    code, out, err = run_cli("--dsn", pg_dsn, "--schema", "public", *command)
    assert_one_line_error(code, out, err, says="schema 'public' is refused")
    assert "--schema pgqueue" in err
    assert relations(conn, "public") == before
    assert not {"pgqueue_version", "alembic_version"} & relations(conn, "public")


def test_public_is_refused_from_the_environment_too(pg_dsn: str) -> None:
    proc = subprocess.run(
        [*PGQUEUE, "--dsn", pg_dsn, "migrate"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean_env(), "PGQUEUE_SCHEMA": "public"},
        check=False,
    )
    assert_one_line_error(
        proc.returncode, proc.stdout, proc.stderr, says="schema 'public' is refused"
    )


# -- every migrate failure is one line, exit 1, nothing changed ----------------------------


@pytest.fixture
def weak_role(pg_dsn: str) -> Iterator[str]:
    """A login role without CREATE on the database (dropped at the end, with its objects)."""
    role = "pgq_weak_" + uuid.uuid4().hex[:8]
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        c.execute(f'CREATE ROLE "{role}" LOGIN')
        yield role
        c.execute(f'DROP OWNED BY "{role}" CASCADE')
        c.execute(f'DROP ROLE "{role}"')


def test_permission_denied_to_create_the_schema(
    pg_dsn: str, unmigrated_schema: str, conn: Conn, weak_role: str
) -> None:
    assert conn.execute(
        "SELECT has_database_privilege(%s, current_database(), 'CREATE')", (weak_role,)
    ).fetchone() == (False,)
    dsn = make_conninfo(pg_dsn, user=weak_role)
    code, out, err = run_cli("--dsn", dsn, "--schema", unmigrated_schema, "migrate")
    assert_one_line_error(
        code,
        out,
        err,
        says=f"migrate cannot set up schema '{unmigrated_schema}': permission denied",
    )
    assert "GRANT CREATE ON DATABASE" in err and "pgqueue migrate --sql" in err
    assert not schema_exists(conn, unmigrated_schema)
    # A schema made for that role by a DBA: the role migrates it without CREATE on the
    # database (migrate does not CREATE SCHEMA IF NOT EXISTS an existing schema).
    conn.execute(f'CREATE SCHEMA "{unmigrated_schema}" AUTHORIZATION "{weak_role}"')
    code, out, err = run_cli("--dsn", dsn, "--schema", unmigrated_schema, "migrate")
    assert (code, err) == (0, ""), out
    assert current_revision(pg_dsn, unmigrated_schema) == HEAD_REVISION


def test_lock_timeout(pg_dsn: str, unmigrated_schema: str, conn: Conn) -> None:
    """A long transaction holds a table the upgrade must change: with a lock_timeout,
    migrate gives up in one line and changes nothing (the version table is not moved)."""
    s = unmigrated_schema
    old_pgqueue_migrate(pg_dsn, s, "0003")
    dsn = make_conninfo(pg_dsn, options="-c lock_timeout=200")
    with psycopg.connect(pg_dsn) as holder:
        holder.execute(f'LOCK TABLE "{s}".jobs IN ACCESS EXCLUSIVE MODE')
        code, out, err = run_cli("--dsn", dsn, "--schema", s, "migrate")
        holder.rollback()
    assert_one_line_error(
        code, out, err, says=f"migrate gave up waiting for a lock in schema '{s}'"
    )
    assert "nothing was changed" in err
    assert "alembic_version" in relations(conn, s) and "pgqueue_version" not in relations(conn, s)
    assert version_rows(conn, s, "alembic_version") == [("0003",)]


def test_statement_timeout(pg_dsn: str, unmigrated_schema: str, conn: Conn) -> None:
    dsn = make_conninfo(pg_dsn, options="-c statement_timeout=1")
    code, out, err = run_cli("--dsn", dsn, "--schema", unmigrated_schema, "migrate")
    if code == 0:
        pytest.skip("the migration ran in under 1 ms a statement")
    assert_one_line_error(code, out, err, says=f"migrate of schema '{unmigrated_schema}' was")
    assert not schema_exists(conn, unmigrated_schema)
