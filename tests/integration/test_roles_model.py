"""The role model (pgqueue/roles.py) covers the migrated schema, and `pgqueue grant`
applies it: idempotent, quoted, one-line errors for a bad kind or role."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from pgqueue import roles
from pgqueue.cli.root import cli
from pgqueue.errors import ConfigurationError

Conn = psycopg.Connection[Any]
MakeRole = Callable[..., str]
ENV_VARS = ("PGQUEUE_DSN", "DATABASE_URL", "PGQUEUE_SCHEMA", "PGQUEUE_APP")


def run_cli(*args: str) -> tuple[int, str]:
    result = CliRunner(env=dict.fromkeys(ENV_VARS)).invoke(cli, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"uncaught {result.exception!r}") from result.exception
    return result.exit_code, result.stdout + result.stderr


def acl(conn: Conn, schema: str) -> list[tuple[Any, ...]]:
    """Every privilege held on the schema's objects and columns, as text."""
    return conn.execute(
        "SELECT c.relname, c.relacl::text, "
        "       array_agg(a.attname || ':' || a.attacl::text ORDER BY a.attnum) "
        "           FILTER (WHERE a.attacl IS NOT NULL) "
        "FROM pg_class AS c LEFT JOIN pg_attribute AS a ON a.attrelid = c.oid "
        "WHERE c.relnamespace = to_regnamespace(%s) GROUP BY 1, 2 "
        "UNION ALL SELECT p.proname, p.proacl::text, NULL FROM pg_proc AS p "
        "WHERE p.pronamespace = to_regnamespace(%s) "
        "UNION ALL SELECT n.nspname, n.nspacl::text, NULL FROM pg_namespace AS n "
        "WHERE n.nspname = %s ORDER BY 1",
        (f'"{schema}"', f'"{schema}"', schema),
    ).fetchall()


@pytest.fixture
def bare_role(pg_dsn: str, make_role: MakeRole) -> Iterator[str]:
    """A role granted nothing (its name)."""
    yield str(conninfo_to_dict(make_role())["user"])


def test_every_object_of_the_schema_is_in_the_model(conn: Conn, schema: str) -> None:
    """A migration that adds a table, view, sequence or function fails this until
    pgqueue/roles.py says who may use it (a kind, or OWNER_ONLY), and one that redefines
    a SECURITY DEFINER function without it (CREATE OR REPLACE resets it) fails too."""
    assert roles.audit(conn, schema) == []
    assert set(roles.OWNER_ONLY) | {o for k in roles.KINDS for o in roles.privileges(k)} == set(
        roles.OBJECTS
    )


def test_the_audit_names_what_a_new_migration_forgot(conn: Conn, schema: str) -> None:
    s = f'"{schema}"'
    conn.execute(f"CREATE TABLE {s}.task_names (name text PRIMARY KEY)")
    conn.execute(f"CREATE FUNCTION {s}.new_helper() RETURNS int LANGUAGE sql AS 'SELECT 1'")
    conn.execute(
        f"CREATE OR REPLACE FUNCTION {s}.pause_queue(queue_name text) RETURNS void "
        f"LANGUAGE sql AS 'SELECT NULL::void'"
    )
    problems = "\n".join(roles.audit(conn, schema))
    assert "task_names: a table the role model does not know" in problems
    assert "new_helper: a function the role model does not know" in problems
    assert "new_helper: PUBLIC may use it" in problems
    assert "pause_queue: SECURITY DEFINER False, search_path pinned False" in problems


def test_definer_functions_are_pinned_and_no_function_is_public(conn: Conn, schema: str) -> None:
    rows = conn.execute(
        "SELECT proname, prosecdef, proconfig, "
        "       has_function_privilege('public', oid, 'EXECUTE') "
        "FROM pg_proc WHERE pronamespace = to_regnamespace(%s) ORDER BY 1",
        (f'"{schema}"',),
    ).fetchall()
    assert {r[0] for r in rows if r[1]} == roles.DEFINER
    for name, definer, config, public in rows:
        assert not public, name
        if definer:
            assert config == ["search_path=pg_catalog, pg_temp"], name


def test_kinds_add_up() -> None:
    worker = roles.privileges("worker")
    assert worker["jobs"]["INSERT"] is None  # the whole table absorbs the producer's columns
    assert worker["enqueue"] == {"EXECUTE": None}  # the producer's, included
    assert roles.privileges("producer")["jobs"]["INSERT"] == roles.PRODUCER_JOB_COLUMNS
    assert "UPDATE" not in roles.privileges("producer")["jobs"]
    operator = roles.privileges("operator")
    assert operator["queue_stats"] == {"SELECT": None}  # the reader's
    assert all(set(p) == {"EXECUTE"} for o, p in operator.items() if o in roles.DEFINER)
    assert not any(set(p) - {"SELECT"} for p in roles.privileges("reader").values())


def test_grant_applies_each_kind_and_again_changes_nothing(
    pg_dsn: str, conn: Conn, schema: str, bare_role: str
) -> None:
    for kind in roles.KINDS:
        code, out = run_cli("--dsn", pg_dsn, "--schema", schema, "grant", kind, bare_role)
        assert code == 0, out
        assert out.startswith(f"granted {kind} to role {bare_role!r}"), out
    before = acl(conn, schema)
    for kind in roles.KINDS:
        assert run_cli("--dsn", pg_dsn, "--schema", schema, "grant", kind, bare_role)[0] == 0
    assert acl(conn, schema) == before


def test_grant_sql_prints_the_statements_without_connecting(schema: str) -> None:
    code, out = run_cli(
        "--dsn", "host=127.0.0.1 port=1 dbname=nowhere", "--schema", schema,
        "grant", "producer", "web app", "--sql",
    )  # fmt: skip
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].startswith('-- pgqueue grant producer "web app" (schema')
    assert lines[1] == f'GRANT USAGE ON SCHEMA "{schema}" TO "web app";'
    assert f'GRANT EXECUTE ON FUNCTION "{schema}"."enqueue" TO "web app";' in lines
    assert any(line.startswith('GRANT INSERT ("id", "queue", ') for line in lines)
    assert not any("UPDATE" in line or "DELETE" in line for line in lines)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("boss", "someone"), "unknown kind 'boss': use one of operator, producer, reader, worker"),
        (("boss", "someone", "--sql"), "unknown kind 'boss'"),
        (("reader", "no_such_role_pgq"), "role 'no_such_role_pgq' does not exist"),
        (("reader", ""), "invalid role name ''"),
        (("reader", "a\nGRANT ALL", "--sql"), "invalid role name 'a\\nGRANT ALL'"),
    ],
)
def test_grant_refuses_in_one_line(
    pg_dsn: str, schema: str, args: tuple[str, ...], says: str
) -> None:
    code, out = run_cli("--dsn", pg_dsn, "--schema", schema, "grant", *args)
    assert code == 1 and out.count("\n") == 1 and says in out, out


def test_grant_on_an_unmigrated_schema_says_migrate(
    pg_dsn: str, unmigrated_schema: str, bare_role: str
) -> None:
    code, out = run_cli(
        "--dsn", pg_dsn, "--schema", unmigrated_schema, "grant", "reader", bare_role
    )
    assert code == 1 and "pgqueue migrate" in out and out.count("\n") == 1, out


def test_a_role_name_is_quoted(pg_dsn: str, conn: Conn, schema: str) -> None:
    name = 'pgq Mixed"Quote; DROP TABLE x'
    conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
    try:
        code, out = run_cli("--dsn", pg_dsn, "--schema", schema, "grant", "reader", name)
        assert code == 0, out
        assert conn.execute(
            "SELECT has_table_privilege(%s, %s, 'SELECT')", (name, f'"{schema}".queue_stats')
        ).fetchone() == (True,)
    finally:
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def test_a_role_that_may_not_grant_grants_nothing(
    make_role: MakeRole, conn: Conn, schema: str, bare_role: str
) -> None:
    operator_dsn = make_role("operator")
    before = acl(conn, schema)
    code, out = run_cli("--dsn", operator_dsn, "--schema", schema, "grant", "reader", bare_role)
    assert code == 1 and out.count("\n") == 1, out
    assert "may not grant" in out and "owner" in out
    assert acl(conn, schema) == before
    with (
        psycopg.connect(operator_dsn, autocommit=True) as c,
        pytest.raises(ConfigurationError, match="may not grant"),
    ):
        roles.grant(c, schema, "worker", bare_role)
