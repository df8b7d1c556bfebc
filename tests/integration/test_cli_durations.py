"""Every CLI option that takes a duration takes the same forms (seconds, 30s, 5m, 1h30m,
7d, 250ms) and refuses a bad one with the same one-line message and exit 2 (click's usage
error), writing nothing."""

from __future__ import annotations

import json
from typing import Any

import click
import psycopg
import pytest

from pgqueue.cli.durations import FORMAT
from pgqueue.cli.root import cli as root
from tests.integration.test_cli import assert_one_line_error, count_jobs
from tests.integration.test_cli_operate import cli, ok

Conn = psycopg.Connection[Any]

#: (command path, arguments the command needs, option, its longest value among 7d and 1h)
OPTIONS = [
    (["work"], [], "--lease", "1h"),  # at most 1d
    (["work"], [], "--poll-interval", "1h"),
    (["work"], [], "--shutdown-timeout", "1h"),  # at most 1d
    (["work"], [], "--keep-succeeded", "7d"),
    (["work"], [], "--keep-failed", "7d"),
    (["prune"], [], "--older-than", "7d"),
    (["queues", "set"], ["q"], "--priority-aging", "7d"),
    (["enqueue"], ["t"], "--delay", "7d"),
    (["enqueue"], ["t"], "--unique-for", "7d"),
    (["status"], [], "--interval", "1h"),
]
IDS = [f"{' '.join(c)} {o}" for c, _, o, _ in OPTIONS]


def parsed(path: list[str], args: list[str]) -> dict[str, Any]:
    """The options as the command receives them (parsed and converted, not run)."""
    command: click.Command = root
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    return command.make_context(" ".join(path), args).params


@pytest.mark.parametrize(("path", "needs", "option", "_"), OPTIONS, ids=IDS)
@pytest.mark.parametrize(
    ("form", "seconds"),
    [("90", 90.0), ("2.5", 2.5), ("30s", 30.0), ("5m", 300.0), ("1h", 3600.0),
     ("1m30s", 90.0), ("1.5m", 90.0), ("1500ms", 1.5), (" 2M ", 120.0)],
)  # fmt: skip
def test_every_duration_option_takes_every_form(
    path: list[str], needs: list[str], option: str, _: str, form: str, seconds: float
) -> None:
    params = parsed(path, [*needs, option, form])
    assert params[option.lstrip("-").replace("-", "_")] == seconds


@pytest.mark.parametrize(("path", "needs", "option", "longest"), OPTIONS, ids=IDS)
def test_days_and_hours(path: list[str], needs: list[str], option: str, longest: str) -> None:
    """7d (the issue's `work --keep-succeeded 7d`), or 1h where that is the longest."""
    seconds = {"7d": 604_800.0, "1h": 3600.0}[longest]
    assert parsed(path, [*needs, option, longest])[option.lstrip("-").replace("-", "_")] == seconds


@pytest.mark.parametrize(("path", "needs", "option", "_"), OPTIONS, ids=IDS)
@pytest.mark.parametrize("bad", ["soon", "7 days", "-5", "1e5", "30m1h", "nan"])
def test_every_duration_option_refuses_the_same_way(
    pg_dsn: str, schema: str, conn: Conn, path: list[str], needs: list[str], option: str,
    _: str, bad: str,
) -> None:  # fmt: skip
    code, out, err = cli(pg_dsn, schema, *path, *needs, option, bad)
    assert_one_line_error(
        code, out, err, says=f"invalid duration {bad!r} for {option}: {FORMAT}", exit_code=2
    )
    assert count_jobs(conn, schema) == 0
    assert conn.execute(f'SELECT count(*) FROM "{schema}".queues').fetchone() == (0,)


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--lease", "0.5s", "--lease 0.5s is out of range: use at least 1s, at most 1d"),
        ("--lease", "2d", "at most 1d"),
        ("--poll-interval", "5ms", "at least 10ms, at most 1h"),
        ("--shutdown-timeout", "2d", "at most 1d"),
    ],
)
def test_work_ranges_are_usage_errors(option: str, value: str, says: str) -> None:
    from tests.integration.test_cli import run_cli

    assert_one_line_error(
        *run_cli("--app", "tests.worker.sample_app:app", "work", option, value),
        says=says,
        exit_code=2,
    )


def test_enqueue_delay_in_minutes(pg_dsn: str, schema: str, conn: Conn) -> None:
    job_id = int(ok(pg_dsn, schema, "enqueue", "t", "--delay", "1h30m"))
    row = conn.execute(
        f'SELECT extract(epoch FROM run_at - created_at) FROM "{schema}".jobs WHERE id = %s',
        (job_id,),
    ).fetchone()
    assert row is not None and float(row[0]) == 5400.0


def test_enqueue_unique_for_in_hours(pg_dsn: str, schema: str, conn: Conn) -> None:
    first = ok(pg_dsn, schema, "enqueue", "t", "--dedupe-key", "k", "--unique-for", "1h")
    conn.execute(f"UPDATE \"{schema}\".jobs SET state = 'failed', finished_at = now()")
    again = ok(pg_dsn, schema, "enqueue", "t", "--dedupe-key", "k", "--unique-for", "1h")
    assert again == first  # finished less than an hour ago: still holds the key


def test_prune_echoes_the_duration_as_written(pg_dsn: str, schema: str) -> None:
    out = ok(pg_dsn, schema, "prune", "--older-than", "1h30m")
    assert out == "pruned 0 jobs (succeeded, failed, cancelled) finished more than 1h30m ago\n"
    out = ok(pg_dsn, schema, "prune", "--older-than", "1.5h", "--json")
    assert json.loads(out)["older_than_seconds"] == 5400.0


def test_queue_limits_take_compound_durations(pg_dsn: str, schema: str, conn: Conn) -> None:
    ok(pg_dsn, schema, "queues", "set", "q", "--priority-aging", "1m30s", "--rate", "10/1m30s")
    assert conn.execute(
        f'SELECT rate_limit, rate_period, priority_aging FROM "{schema}".queues'
    ).fetchall() == [(10, 90.0, 90.0)]
    ok(pg_dsn, schema, "queues", "set", "q", "--priority-aging", "none", "--rate", "none")
    assert conn.execute(
        f'SELECT rate_limit, rate_period, priority_aging FROM "{schema}".queues'
    ).fetchall() == [(None, None, None)]


def test_work_defaults_are_durations() -> None:
    params = parsed(["work"], [])
    assert (
        params["lease"],
        params["poll_interval"],
        params["shutdown_timeout"],
        params["keep_succeeded"],
        params["keep_failed"],
    ) == (30.0, 2.0, 30.0, 7 * 86_400.0, 30 * 86_400.0)
