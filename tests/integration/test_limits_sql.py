"""The limits at the SQL surface: enqueue() refuses with invalid_parameter_value, the
jobs table's CHECKs refuse a plain INSERT, migration 0005 fails existing rows that break
a limit, and the readers survive a bad row put in by hand."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from pgqueue import App
from pgqueue.limits import DEFAULT_MAX_DEPTH, DEFAULT_MAX_PAYLOAD_BYTES, MAX_DEPTH_CEILING
from tests.integration.test_cli import run_cli
from tests.integration.test_migrate import _upgrade_to

Conn = psycopg.Connection[Any]


def nested(levels: int) -> Any:
    """A JSON array ``levels`` containers deep (``[]`` is 1)."""
    value: Any = []
    for _ in range(levels - 1):
        value = [value]
    return value


def count(conn: Conn, schema: str) -> int:
    row = conn.execute(f'SELECT count(*) FROM "{schema}".all_jobs').fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize(
    ("sql", "params", "says"),
    [
        ("enqueue('t', run_at => 'infinity')", (), "run_at"),
        ("enqueue('t', run_at => '-infinity')", (), "run_at"),
        ("enqueue('t', run_at => now() + interval '101 years')", (), "run_at"),
        ("enqueue('t', run_at => '0001-01-01 BC')", (), "run_at"),
        ("enqueue('t', run_at => '1969-12-31 23:59:59+00')", (), "run_at"),
        ("enqueue('t', max_attempts => 0)", (), "max_attempts"),
        ("enqueue('t', max_attempts => 2000000)", (), "max_attempts"),
        ("enqueue('t', priority => 40000)", (), "priority"),
        ("enqueue('t', dedupe_key => repeat('k', 6000))", (), "dedupe_key"),
        ("enqueue('t', dedupe_key => '')", (), "dedupe_key"),
        ("enqueue('t', group_key => repeat('g', 201))", (), "group_key"),
        ("enqueue('t', depends_on => ARRAY[NULL]::bigint[])", (), "depends_on"),
        ("enqueue(E't\\n')", (), "task name"),
        ("enqueue('t', queue => E'q\\n')", (), "queue name"),
        ("enqueue('t', %s::jsonb)", (json.dumps(["x" * DEFAULT_MAX_PAYLOAD_BYTES]),), "bytes"),
        ("enqueue('t', %s::jsonb)", (json.dumps(nested(DEFAULT_MAX_DEPTH + 1)),), "deeper"),
        ("enqueue('t', %s::jsonb)", (json.dumps({"a": nested(DEFAULT_MAX_DEPTH)}),), "deeper"),
    ],
)
def test_sql_enqueue_refuses_with_a_message_naming_the_limit(
    conn: Conn, schema: str, sql: str, params: tuple[Any, ...], says: str
) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=says):
        conn.execute(f'SELECT "{schema}".{sql}', params)
    assert count(conn, schema) == 0


def test_sql_enqueue_takes_what_python_takes_at_the_limits(conn: Conn, schema: str) -> None:
    conn.execute(f'SELECT "{schema}".enqueue(%s, %s::jsonb)', ("t", json.dumps(nested(64))))
    conn.execute(
        f"""SELECT "{schema}".enqueue('t', run_at => now() - interval '50 years',
                                       dedupe_key => repeat('k', 500))"""
    )
    assert count(conn, schema) == 2


@pytest.mark.parametrize(
    ("column", "value", "constraint"),
    [
        ("run_at", "'infinity'", "jobs_run_at_check"),
        ("run_at", "'10000-01-01'", "jobs_run_at_check"),
        ("run_at", "'0001-01-01 BC'", "jobs_run_at_check"),
        ("max_attempts", "1000001", "jobs_max_attempts_max_check"),
        ("dedupe_key", "repeat('k', 501)", "jobs_dedupe_key_check"),
        ("depends_on", "ARRAY[1, NULL]::bigint[]", "jobs_depends_on_check"),
        ("args", "jsonb_build_array(repeat('x', 9000000))", "jobs_payload_size_check"),
        ("args", f"'{json.dumps(nested(MAX_DEPTH_CEILING + 1))}'", "jobs_payload_depth_check"),
    ],
)
def test_the_table_refuses_a_plain_insert_past_the_ceilings(
    conn: Conn, schema: str, column: str, value: str, constraint: str
) -> None:
    with pytest.raises(psycopg.errors.CheckViolation, match=constraint):
        conn.execute(f'INSERT INTO "{schema}".jobs (task, {column}) VALUES (%s, {value})', ("t",))
    assert count(conn, schema) == 0


def test_the_size_ceiling_holds_for_a_value_that_arrives_compressed(
    conn: Conn, schema: str
) -> None:
    """INSERT ... SELECT from a table that holds the value compressed: its stored size is
    small (a repeated string compresses 100:1), its text is 20 MB; the text is measured."""
    conn.execute(f'CREATE TABLE "{schema}".big_src (a jsonb)')
    src = f'"{schema}".big_src'
    conn.execute(f"INSERT INTO {src} VALUES (jsonb_build_array(repeat('x', 20000000)))")
    sizes = "SELECT pg_column_size(a), pg_column_compression(a)"
    stored = conn.execute(f"{sizes} FROM {src}").fetchone()
    assert stored is not None and stored[0] < 8388608 and stored[1] is not None
    with pytest.raises(psycopg.errors.CheckViolation, match="jobs_payload_size_check"):
        conn.execute(f"""INSERT INTO "{schema}".jobs (task, args) SELECT 't', a FROM {src}""")
    assert count(conn, schema) == 0


def test_the_table_takes_the_ceilings(conn: Conn, schema: str) -> None:
    deep = json.dumps({"k": nested(MAX_DEPTH_CEILING - 1)})
    conn.execute(f"""INSERT INTO "{schema}".jobs (task, kwargs) VALUES ('t', %s)""", (deep,))
    assert count(conn, schema) == 1


def _bad_row(conn: Conn, schema: str, state: str = "queued") -> int:
    """A job with run_at = infinity, put in by hand past the constraint."""
    conn.execute(f'ALTER TABLE "{schema}".jobs DROP CONSTRAINT jobs_run_at_check')
    row = conn.execute(
        f"""INSERT INTO "{schema}".jobs (task, queue, run_at, state)
            VALUES ('t', 'q', 'infinity', %s), ('t', 'q', '-infinity', %s) RETURNING id""",
        (state, state),
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_readers_survive_an_infinite_run_at(pg_dsn: str, conn: Conn, schema: str) -> None:
    bad = _bad_row(conn, schema)
    base = ("--dsn", pg_dsn, "--schema", schema)
    for args in (("status",), ("jobs", "list"), ("jobs", "show", str(bad))):
        code, _, err = run_cli(*base, *args)
        assert (code, err) == (0, ""), args
    app = App(pg_dsn, schema=schema)
    try:
        assert {q["queue"]: q["queued"] for q in app.admin.queues()} == {"q": 1}
        assert app.admin.job(bad)["state"] == "queued"
        assert len(app.admin.jobs()) == 2
    finally:
        app.close()


def test_upgrade_fails_unfinished_rows_that_break_a_limit(
    pg_dsn: str, unmigrated_schema: str, conn: Conn
) -> None:
    """0005 on a schema holding bad rows: unfinished ones are failed with the reason,
    finished ones stay; a constraint a finished row breaks stays NOT VALID; the upgrade
    itself does not fail."""
    s = unmigrated_schema
    _upgrade_to(pg_dsn, s, "0004")
    conn.execute(
        f"""INSERT INTO "{s}".jobs (task, run_at, state, finished_at, dedupe_key, args)
            VALUES ('t', 'infinity', 'queued', NULL, NULL, '[]'),
                   ('t', now(), 'queued', NULL, repeat('k', 600), '[]'),
                   ('t', now(), 'failed', now(), NULL, %s),
                   ('t', now(), 'queued', NULL, NULL, '[1]')""",
        (json.dumps(nested(MAX_DEPTH_CEILING + 5)),),
    )
    code, _, err = run_cli("--dsn", pg_dsn, "--schema", s, "migrate")
    assert (code, err) == (0, ""), err
    rows = conn.execute(
        f"""SELECT state, errors -> -1 ->> 'kind' FROM "{s}".jobs ORDER BY id"""
    ).fetchall()
    assert rows == [
        ("failed", "refused"),
        ("failed", "refused"),
        ("failed", None),
        ("queued", None),
    ]
    valid = dict(
        conn.execute(
            """SELECT conname, convalidated FROM pg_constraint
               WHERE conrelid = %s::regclass AND conname LIKE 'jobs_%%'""",
            (f'"{s}".jobs',),
        ).fetchall()
    )
    # The failed rows with a deep payload and a long key are still there (nothing is
    # deleted): those two stay NOT VALID; run_at out of range was replaced, so it validates.
    assert valid["jobs_payload_depth_check"] is False
    assert valid["jobs_dedupe_key_check"] is False
    assert valid["jobs_run_at_check"] is True
    assert valid["jobs_payload_size_check"] is True
    code, _, err = run_cli("--dsn", pg_dsn, "--schema", s, "status")
    assert (code, err) == (0, "")


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (["--args", "[" * 10_000 + "]" * 10_000], "--args"),
        (["--args", json.dumps(nested(DEFAULT_MAX_DEPTH + 1))], "nested deeper"),
        (["--kwargs", '{"a\\u0000": 1}'], "NUL"),
        (["--args", '["\\ud800"]'], "lone surrogate"),
        (["--args", json.dumps(["x" * DEFAULT_MAX_PAYLOAD_BYTES])], "bytes of JSON"),
        (["--queue", "q\n"], "invalid queue name"),
        (["--dedupe-key", "k\x00"], "NUL"),
        (["--group-key", "g\x00"], "NUL"),
        # a bad duration is a usage error of the option (exit 2), as for every duration
        (["--delay", "6000w"], "at most 100 years"),
        (["--delay", "1e300"], "invalid duration '1e300' for --delay"),
        (["--delay", "inf"], "invalid duration 'inf' for --delay"),
    ],
)
def test_cli_refuses_in_one_line(
    pg_dsn: str, schema: str, conn: Conn, options: list[str], says: str
) -> None:
    code, out, err = run_cli("--dsn", pg_dsn, "--schema", schema, "enqueue", "t", *options)
    assert (code, out) == (2 if options[0] == "--delay" else 1, ""), err
    assert len(err.strip().splitlines()) == 1 and says in err and "Traceback" not in err
    assert count(conn, schema) == 0


def test_cli_refuses_a_task_name_ending_in_a_newline(pg_dsn: str, schema: str, conn: Conn) -> None:
    code, _, err = run_cli("--dsn", pg_dsn, "--schema", schema, "enqueue", "t\n")
    assert code == 1 and "invalid task name" in err
    assert count(conn, schema) == 0
