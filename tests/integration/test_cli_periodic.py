"""``pgqueue periodic``: the schedules' rows with their last and next tick (table and
--json), empty and unmigrated schemas."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import psycopg

from tests.integration.test_cli import assert_one_line_error, run_cli

Conn = psycopg.Connection[Any]


def cli(dsn: str, schema: str, *args: str) -> tuple[int, str, str]:
    return run_cli("--dsn", dsn, "--schema", schema, *args)


def test_no_schedules(pg_dsn: str, schema: str) -> None:
    code, out, err = cli(pg_dsn, schema, "periodic")
    assert (code, err) == (0, "")
    assert out.startswith("no periodic schedules")
    code, out, err = cli(pg_dsn, schema, "periodic", "--json")
    assert (code, err, json.loads(out)) == (0, "", [])


def test_schedules_with_last_and_next_tick(pg_dsn: str, schema: str, conn: Conn) -> None:
    rows = [
        ("cleanup", "every 300s", datetime(2026, 11, 26, 10, 5, tzinfo=UTC)),
        (
            "report",
            "0 9 * * mon-fri tz=Europe/Paris",
            datetime(2026, 11, 26, 8, tzinfo=UTC),
        ),
        ("z" * 70, "every 1.5s", datetime(2026, 11, 26, 10, 0, 1, 500000, tzinfo=UTC)),
        ("broken", "not a schedule", datetime(2026, 11, 26, tzinfo=UTC)),
    ]
    for row in rows:
        conn.execute(
            f'INSERT INTO "{schema}".periodic (name, schedule, last_tick) VALUES (%s, %s, %s)', row
        )
    code, out, err = cli(pg_dsn, schema, "periodic")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == [
        "NAME",
        "SCHEDULE",
        "LAST",
        "TICK",
        "(UTC)",
        "NEXT",
        "TICK",
        "(UTC)",
    ]
    assert all(len(line) <= 80 for line in lines), out
    by_name = {line.split()[0]: line for line in lines[1:]}
    assert re.search("2026-11-26 10:05:00 +2026-11-26 10:10:00$", by_name["cleanup"])
    # Friday 27th, 09:00 in Paris (CET) is 08:00 UTC
    assert re.search("2026-11-26 08:00:00 +2026-11-27 08:00:00$", by_name["report"])
    assert by_name["broken"].rstrip().endswith("-")  # unreadable schedule: no next tick
    assert any(name.startswith("zzz") and name.endswith("…") for name in by_name)
    assert re.search(r"10:00:01\.500 +2026-11-26 10:00:03$", out, re.MULTILINE)

    code, out, err = cli(pg_dsn, schema, "periodic", "--json")
    assert (code, err) == (0, "")
    data = {d["name"]: d for d in json.loads(out)}
    assert data["cleanup"] == {
        "name": "cleanup",
        "schedule": "every 300s",
        "last_tick": "2026-11-26T10:05:00+00:00",
        "next_tick": "2026-11-26T10:10:00+00:00",
        "task": None,
        "catch_up": None,
        "updated_at": data["cleanup"]["updated_at"],
    }
    assert data["broken"]["next_tick"] is None


def test_on_an_unmigrated_schema(pg_dsn: str, unmigrated_schema: str) -> None:
    assert_one_line_error(*cli(pg_dsn, unmigrated_schema, "periodic"), says="pgqueue migrate")
