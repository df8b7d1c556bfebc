"""The command line: enqueue, status, help texts, and one-line errors that write nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import click
import psycopg
import pytest
from click.testing import CliRunner

from pgqueue.cli.root import cli

Conn = psycopg.Connection[Any]
#: The real command line, as a user runs it (``python -m pgqueue.cli`` is the ``pgqueue`` script).
PGQUEUE = [sys.executable, "-m", "pgqueue.cli"]
ENV_VARS = ("PGQUEUE_DSN", "DATABASE_URL", "PGQUEUE_SCHEMA", "PGQUEUE_APP")


def run_cli(*args: str) -> tuple[int, str, str]:
    """Run the click command in-process: (exit code, stdout, stderr). A Python exception that
    escaped the command (which the real script would print as a traceback) fails the test."""
    result = CliRunner(env=dict.fromkeys(ENV_VARS)).invoke(cli, args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"uncaught {result.exception!r}") from result.exception
    return result.exit_code, result.stdout, result.stderr


def count_jobs(conn: Conn, schema: str) -> int:
    row = conn.execute(f'SELECT count(*) FROM "{schema}".all_jobs').fetchone()
    assert row is not None
    return int(row[0])


def assert_one_line_error(code: int, out: str, err: str, *, says: str, exit_code: int = 1) -> None:
    """One line on stderr saying ``says``; exit 1 (2 for a bad option value: click's usage
    error convention)."""
    assert code == exit_code, (code, out, err)
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("Error: ")
    assert says in lines[0]
    assert "Traceback" not in err


# -- enqueue ------------------------------------------------------------------------------------


def test_enqueue_prints_the_id(pg_dsn: str, schema: str, conn: Conn) -> None:
    code, out, err = run_cli(
        "--dsn",
        pg_dsn,
        "--schema",
        schema,
        "enqueue",
        "emails.send",
        "--args",
        '["a@b.c", 2]',
        "--kwargs",
        '{"subject": "hi"}',
        "--queue",
        "emails",
        "--priority",
        "5",
        "--delay",
        "60",
        "--max-attempts",
        "4",
        "--dedupe-key",
        "k1",
    )
    assert (code, err) == (0, "")
    assert out.strip().isdigit()
    job_id = int(out)
    row = conn.execute(
        f"SELECT task, args, kwargs, queue, priority, max_attempts, dedupe_key, "
        f'run_at - created_at FROM "{schema}".all_jobs WHERE id = %s',
        (job_id,),
    ).fetchone()
    assert row is not None
    assert row[:7] == ("emails.send", ["a@b.c", 2], {"subject": "hi"}, "emails", 5, 4, "k1")
    assert row[7].total_seconds() == 60


def test_enqueue_json_output_and_dedupe(pg_dsn: str, schema: str, conn: Conn) -> None:
    base = ("--dsn", pg_dsn, "--schema", schema, "enqueue", "t", "--dedupe-key", "same")
    code, out, err = run_cli(*base, "--json")
    assert (code, err) == (0, "")
    data = json.loads(out)
    assert list(data) == ["id"] and isinstance(data["id"], int)
    code, out, _ = run_cli(*base, "--json")
    assert (code, json.loads(out)) == (0, data)
    assert count_jobs(conn, schema) == 1


def test_enqueue_with_dsn_from_environment(pg_dsn: str, schema: str, conn: Conn) -> None:
    result = CliRunner(
        env={
            "PGQUEUE_DSN": pg_dsn,
            "PGQUEUE_SCHEMA": schema,
            "DATABASE_URL": None,
            "PGQUEUE_APP": None,
        }
    ).invoke(cli, ["enqueue", "from.env"])
    assert result.exit_code == 0, result.output
    assert conn.execute(f'SELECT task FROM "{schema}".all_jobs').fetchall() == [("from.env",)]


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (["--args", "[1, 2"], "--args is not valid JSON"),
        (["--args", "not json"], "--args is not valid JSON"),
        (["--args", '{"a": 1}'], "--args must be a JSON array"),
        (["--args", "5"], "--args must be a JSON array"),
        (["--kwargs", "[1]"], "--kwargs must be a JSON object"),
        (["--kwargs", "{'single': 'quotes'}"], "--kwargs is not valid JSON"),
        (["--args", "[NaN]"], "argument 0"),
        (["--queue", "bad queue"], "invalid queue name"),
        (["--queue", "x;drop"], "invalid queue name"),
        (["--priority", "99999"], "priority"),
        (["--max-attempts", "0"], "max_attempts"),
    ],
)
def test_enqueue_bad_input_one_line_nothing_written(
    pg_dsn: str, schema: str, conn: Conn, options: list[str], says: str
) -> None:
    assert_one_line_error(
        *run_cli("--dsn", pg_dsn, "--schema", schema, "enqueue", "t", *options), says=says
    )
    assert count_jobs(conn, schema) == 0


def test_enqueue_bad_task_name(pg_dsn: str, schema: str, conn: Conn) -> None:
    assert_one_line_error(
        *run_cli("--dsn", pg_dsn, "--schema", schema, "enqueue", "no spaces"),
        says="invalid task name",
    )
    assert count_jobs(conn, schema) == 0


def test_enqueue_bad_input_real_script(pg_dsn: str, schema: str, conn: Conn) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    proc = subprocess.run(
        [*PGQUEUE, "--dsn", pg_dsn, "--schema", schema, "enqueue", "t", "--args", "{oops"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert_one_line_error(proc.returncode, proc.stdout, proc.stderr, says="--args")
    assert count_jobs(conn, schema) == 0


# -- status -------------------------------------------------------------------------------------


def test_status_empty(pg_dsn: str, schema: str) -> None:
    code, out, err = run_cli("--dsn", pg_dsn, "--schema", schema, "status")
    assert (code, err) == (0, "")
    assert "no queues" in out
    code, out, err = run_cli("--dsn", pg_dsn, "--schema", schema, "status", "--json")
    assert (code, err, json.loads(out)) == (0, "", [])


def test_status_table_and_json(pg_dsn: str, schema: str, conn: Conn) -> None:
    conn.execute(
        f'INSERT INTO "{schema}".jobs (task, queue, state, run_at, created_at, finished_at) '
        "VALUES ('t', 'emails', 'queued', now() - interval '10 seconds', now(), NULL), "
        "('t', 'emails', 'queued', now(), now() - interval '1 day', NULL), "
        "('t', 'emails', 'failed', now(), now(), now()), "
        "('t', 'emails', 'succeeded', now(), now(), now() - interval '2 minutes'), "
        "('t', 'reports', 'queued', now() + interval '1 hour', now(), NULL), "
        "('t', 'reports', 'queued', now() - interval '3 hours', now(), NULL), "
        "('t', 'reports', 'running', now(), now(), NULL), "
        "('t', 'reports', 'succeeded', now(), now(), now())"
    )
    conn.execute(f"SELECT \"{schema}\".pause_queue('later')")  # paused ahead, no jobs yet
    code, out, err = run_cli("--dsn", pg_dsn, "--schema", schema, "status", "--json")
    assert (code, err) == (0, "")
    data = json.loads(out)
    counts = ("queued", "scheduled", "running", "failed", "finished_last_minute", "paused")
    assert [(d["queue"], *(d[k] for k in counts)) for d in data] == [
        ("emails", 2, 0, 0, 1, 1, False),
        ("later", 0, 0, 0, 0, 0, True),
        ("reports", 1, 1, 1, 0, 1, False),
    ]
    ages = {d["queue"]: d["oldest_queued_age_seconds"] for d in data}
    assert 10 <= ages["emails"] < 60  # run_at counts, not created_at: due 10 s ago
    assert 3 * 3600 <= ages["reports"] < 3 * 3600 + 60
    assert ages["later"] is None

    code, out, err = run_cli("--dsn", pg_dsn, "--schema", schema, "status")
    assert (code, err) == (0, "")
    lines = out.strip().splitlines()
    assert lines[0].split() == [
        "QUEUE", "QUEUED", "SCHED", "RUNNING", "FAILED", "OLDEST", "DONE/MIN", "PAUSED"
    ]  # fmt: skip
    assert all(len(line) <= 80 for line in lines)
    rows = [line.split() for line in lines[1:]]
    assert rows == [
        ["emails", "2", "0", "0", "1", rows[0][5], "1"],
        ["later", "0", "0", "0", "0", "-", "0", "yes"],
        ["reports", "1", "1", "1", "0", rows[2][5], "1"],
    ]
    assert rows[0][5].endswith("s")  # ten seconds
    assert rows[2][5].endswith("h")  # three hours, shown in hours


# -- help ---------------------------------------------------------------------------------------


def _commands() -> list[str]:
    return sorted(cli.commands)


@pytest.mark.parametrize("command", _commands())
def test_every_command_help_has_an_example(command: str) -> None:
    code, out, err = run_cli(command, "--help")
    assert (code, err) == (0, "")
    assert "Example" in out
    examples = out.split("Example", 1)[1]
    assert "pgqueue " in examples and command in examples  # a command line to copy


def test_the_contract_commands_exist() -> None:
    assert {"migrate", "enqueue", "status", "jobs", "queues", "workers", "prune"} <= set(
        cli.commands
    )
    assert all(isinstance(c, click.Command) for c in cli.commands.values())


def test_root_help_shows_how_to_start() -> None:
    code, out, err = run_cli("--help")
    assert (code, err) == (0, "")
    for line in ("pgqueue migrate", "pgqueue enqueue", "pgqueue status"):
        assert line in out


# -- configuration errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dsn", "says"),
    [
        ("mysql://u@h/db", "malformed DSN"),
        ("garbage", "malformed DSN"),
        ("host=h port", "malformed DSN"),
        ("postgresql://[::1", "malformed DSN"),
    ],
)
@pytest.mark.parametrize("command", [["status"], ["enqueue", "t"], ["migrate"]])
def test_malformed_dsn_is_one_line(dsn: str, says: str, command: list[str]) -> None:
    assert_one_line_error(*run_cli("--dsn", dsn, *command), says=says)


@pytest.mark.parametrize(
    "command", [["status"], ["migrate"], ["jobs", "list"], ["workers"], ["queues", "pause", "q"]]
)
def test_unreachable_server_is_one_line(command: list[str]) -> None:
    assert_one_line_error(
        *run_cli("--dsn", "postgresql://postgres@127.0.0.1:1/test?connect_timeout=5", *command),
        says="cannot connect to PostgreSQL",
    )


def test_bad_schema_name_is_one_line(pg_dsn: str) -> None:
    assert_one_line_error(
        *run_cli("--dsn", pg_dsn, "--schema", "Bad-Name", "status"), says="invalid schema name"
    )


def test_malformed_dsn_real_script() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    proc = subprocess.run(
        [*PGQUEUE, "--dsn", "mysql://u@h/db", "enqueue", "t"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert_one_line_error(proc.returncode, proc.stdout, proc.stderr, says="malformed DSN")
