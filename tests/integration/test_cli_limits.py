"""`pgqueue queues set` and `app.admin.set_limits`: what they write, what they print,
and that bad input writes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from pgqueue import App, InvalidJobError
from tests.integration.test_cli import assert_one_line_error
from tests.integration.test_cli_operate import cli, ok

Conn = psycopg.Connection[Any]
COLUMNS = "max_running, max_running_per_group, rate_limit, rate_period, priority_aging"


@pytest.fixture
def lapp(pg_dsn: str, schema: str) -> Iterator[App]:
    application = App(pg_dsn, schema=schema, strict_tasks=False)
    yield application
    application.close()


def limits(conn: Conn, schema: str, queue: str) -> tuple[Any, ...] | None:
    return conn.execute(
        f'SELECT {COLUMNS} FROM "{schema}".queues WHERE name = %s', (queue,)
    ).fetchone()


def test_set_changes_only_the_named_limits(pg_dsn: str, conn: Conn, schema: str) -> None:
    out = ok(pg_dsn, schema, "queues", "set", "gpu", "--max-running", "4")
    assert out == "queue gpu: max running 4\n"
    assert limits(conn, schema, "gpu") == (4, None, None, None, None)
    out = ok(pg_dsn, schema, "queues", "set", "gpu", "--rate", "10/2s", "--max-per-group", "2")
    assert out == "queue gpu: max running 4, per group 2, rate 10/2s\n"
    data = json.loads(
        ok(pg_dsn, schema, "queues", "set", "gpu", "--priority-aging", "1m", "--json")
    )
    assert data == {
        "queue": "gpu",
        "max_running": 4,
        "max_running_per_group": 2,
        "rate_limit": 10,
        "rate_period": 2.0,
        "priority_aging": 60.0,
    }
    ok(pg_dsn, schema, "queues", "set", "gpu", "--rate", "none", "--max-running", "none")
    assert limits(conn, schema, "gpu") == (None, 2, None, None, 60.0)
    # the view and `queues list --json` show them
    listed = json.loads(ok(pg_dsn, schema, "queues", "list", "--json"))
    assert listed[0]["max_running_per_group"] == 2 and listed[0]["priority_aging"] == 60.0
    # a rate written with a bare unit is one of that unit
    ok(pg_dsn, schema, "queues", "set", "gpu", "--rate", "100/m")
    assert limits(conn, schema, "gpu") == (None, 2, 100, 60.0, 60.0)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--max-running", "0"], "bad --max-running '0'"),
        (["--max-running", "four"], "bad --max-running 'four'"),
        (["--max-per-group", "-1"], "bad --max-per-group '-1'"),
        (["--rate", "10"], "invalid rate '10' for --rate"),
        (["--rate", "x/s"], "invalid rate 'x/s' for --rate"),
        (["--rate", "10/"], "invalid rate '10/' for --rate"),
        (["--rate", "10/0s"], "the period must be longer than 0"),
        (["--rate", "10/fortnight"], "invalid duration 'fortnight' for --rate"),
        (["--priority-aging", "soon"], "invalid duration 'soon' for --priority-aging"),
        (["--priority-aging", "0"], "--priority-aging 0 is out of range: use more than 0s"),
        ([], "nothing to set"),
    ],
)
def test_bad_limits_are_one_line_errors_that_write_nothing(
    pg_dsn: str, conn: Conn, schema: str, args: list[str], message: str
) -> None:
    ok(pg_dsn, schema, "queues", "set", "gpu", "--max-running", "4")
    code, out, err = cli(pg_dsn, schema, "queues", "set", "gpu", *args)
    # a bad value of --rate or --priority-aging is a usage error (exit 2), as click's are
    usage = any(a in ("--rate", "--priority-aging") for a in args)
    assert_one_line_error(code, out, err, says=message, exit_code=2 if usage else 1)
    assert limits(conn, schema, "gpu") == (4, None, None, None, None)


def test_bad_queue_name_writes_nothing(pg_dsn: str, conn: Conn, schema: str) -> None:
    code, out, err = cli(pg_dsn, schema, "queues", "set", "no such", "--max-running", "2")
    assert_one_line_error(code, out, err, says="invalid queue name")
    assert conn.execute(f'SELECT count(*) FROM "{schema}".queues').fetchone() == (0,)


def test_admin_set_limits_validates(lapp: App, conn: Conn, schema: str) -> None:
    assert lapp.admin.set_limits("q", max_running=2) == {
        "max_running": 2,
        "max_running_per_group": None,
        "rate_limit": None,
        "rate_period": None,
        "priority_aging": None,
    }
    for bad, message in [
        ({"max_running": 0}, "max_running must be a whole number from 1"),
        ({"max_running": 2.5}, "max_running must be a whole number"),
        ({"max_running": True}, "max_running must be"),
        ({"rate_limit": 5}, "rate_limit and rate_period go together"),
        ({"rate_period": -1.0, "rate_limit": 5}, "rate_period must be a number of seconds"),
        ({"priority_aging": float("nan")}, "priority_aging must be"),
        ({"max_runing": 3}, "unknown limit 'max_runing'"),
    ]:
        with pytest.raises(InvalidJobError, match=message):
            lapp.admin.set_limits("q", **bad)  # type: ignore[arg-type]
    assert limits(conn, schema, "q") == (2, None, None, None, None)
