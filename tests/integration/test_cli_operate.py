"""The operator's command line: jobs list/show/retry/cancel, queues, workers, prune.

Rows are real: jobs are enqueued through the App and moved to failed/running/succeeded
with UPDATEs (simpler than running a worker; the worker's own writes are tested in
tests/worker). Every command is checked for its table (80 columns) and its --json, and
every bad id, queue, state or duration for a one-line error that writes nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from pgqueue import App
from tests.integration.test_cli import ENV_VARS, PGQUEUE, assert_one_line_error, run_cli

Conn = psycopg.Connection[Any]

TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "app/emails.py", line 12, in send\n'
    "    smtp.send(to)\n"
    "ConnectionRefusedError: [Errno 111] Connection refused\n"
)


def cli(dsn: str, schema: str, *args: str) -> tuple[int, str, str]:
    return run_cli("--dsn", dsn, "--schema", schema, *args)


def ok(dsn: str, schema: str, *args: str) -> str:
    code, out, err = cli(dsn, schema, *args)
    assert (code, err) == (0, ""), (code, out, err)
    return out


def job_row(conn: Conn, schema: str, job_id: int) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(f'SELECT * FROM "{schema}".all_jobs WHERE id = %s', (job_id,)).fetchone()
    assert row is not None
    return row


def snapshot(conn: Conn, schema: str) -> list[tuple[Any, ...]]:
    """Everything an operator command could change."""
    jobs = conn.execute(
        f"SELECT id, state, attempt, error_count, run_at, finished_at, cancel_requested_at "
        f'FROM "{schema}".all_jobs ORDER BY id'
    ).fetchall()
    queues = conn.execute(f'SELECT name, paused_at FROM "{schema}".queues ORDER BY name')
    return [*jobs, *queues.fetchall()]


@pytest.fixture
def papp(pg_dsn: str, schema: str) -> Iterator[App]:
    application = App(pg_dsn, schema=schema, strict_tasks=False)
    yield application
    application.close()


@pytest.fixture
def world(papp: App, conn: Conn, schema: str) -> dict[str, int]:
    """Five jobs, one in each situation an operator meets."""
    s = f'"{schema}"'
    ids = {
        "succeeded": papp.enqueue("emails.send", kwargs={"to": "a@b.c"}, queue="emails"),
        "failed": papp.enqueue("emails.send", ["x@y.z"], queue="emails", max_attempts=3),
        "running": papp.enqueue("reports.build", [2026, 11], queue="reports"),
        "scheduled": papp.enqueue("reports.build", queue="reports", delay=3600),
        "queued": papp.enqueue("cleanup"),
    }
    conn.execute(
        f"UPDATE {s}.jobs SET state = 'succeeded', attempt = 1, started_at = now(), "
        """finished_at = now(), result = '{"sent": true}' WHERE id = %s""",
        (ids["succeeded"],),
    )
    errors = [
        {
            "attempt": n,
            "kind": "error",
            "type": "builtins.ConnectionRefusedError",
            "message": f"ConnectionRefusedError: refused #{n}",  # as the worker writes it
            "traceback": TRACEBACK,
            "at": f"2026-11-26T10:00:0{n}+00:00",
        }
        for n in (1, 2, 3)
    ]
    conn.execute(
        f"UPDATE {s}.jobs SET state = 'failed', attempt = 3, error_count = 3, "
        "started_at = now(), finished_at = now(), errors = %s::jsonb WHERE id = %s",
        (json.dumps(errors), ids["failed"]),
    )
    conn.execute(
        f"UPDATE {s}.jobs SET state = 'running', attempt = 1, worker_id = 'h:1:abcd', "
        "started_at = now(), lease_expires_at = now() + interval '30 seconds' WHERE id = %s",
        (ids["running"],),
    )
    return ids


def table_lines(out: str) -> list[list[str]]:
    lines = out.rstrip("\n").splitlines()
    assert all(len(line) <= 80 for line in lines), [len(line) for line in lines]
    return [line.split() for line in lines]


# -- jobs list --------------------------------------------------------------------------------


def test_jobs_list_table(pg_dsn: str, schema: str, world: dict[str, int]) -> None:
    rows = table_lines(ok(pg_dsn, schema, "jobs", "list"))
    assert rows[0] == ["ID", "QUEUE", "TASK", "STATE", "ATTEMPT", "AGE/RUN", "AT", "LAST", "ERROR"]
    body = {int(r[0]): r[1:] for r in rows[1:]}
    assert list(body) == sorted(world.values(), reverse=True)  # newest first
    assert body[world["queued"]][:4] == ["default", "cleanup", "queued", "0/20"]
    assert body[world["running"]][:4] == ["reports", "reports.build", "running", "1/20"]
    assert body[world["succeeded"]][:4] == ["emails", "emails.send", "succeeded", "1/20"]
    assert body[world["failed"]][:4] == ["emails", "emails.send", "failed", "3/3"]
    last_error = " ".join(body[world["failed"]][5:])  # the last error, maybe cut with …
    assert len(last_error) >= 10 and "ConnectionRefusedError: refused #3".startswith(
        last_error.removesuffix("…")
    )
    assert body[world["scheduled"]][4:6] == ["in", body[world["scheduled"]][5]]
    assert body[world["scheduled"]][5].endswith("m")  # in 60.0m (or 59.9m)
    assert body[world["queued"]][4].endswith("s")  # its age, seconds


def test_jobs_list_filters_and_empty(pg_dsn: str, schema: str, world: dict[str, int]) -> None:
    def ids(*options: str) -> list[int]:
        return [int(r[0]) for r in table_lines(ok(pg_dsn, schema, "jobs", "list", *options))[1:]]

    assert ids("--queue", "emails", "--state", "failed") == [world["failed"]]
    assert ids("--task", "reports.build") == [world["scheduled"], world["running"]]
    assert ids("--state", "queued", "--queue", "reports") == [world["scheduled"]]
    assert ids("--limit", "2") == [world["queued"], world["scheduled"]]
    out = ok(pg_dsn, schema, "jobs", "list", "--queue", "emails", "--state", "running")
    assert out == "no jobs match\n"
    empty = ok(pg_dsn, schema, "jobs", "list", "--task", "nothing.here", "--json")
    assert json.loads(empty) == []


def test_jobs_list_json(pg_dsn: str, schema: str, world: dict[str, int]) -> None:
    data = json.loads(ok(pg_dsn, schema, "jobs", "list", "--json"))
    assert [d["id"] for d in data] == sorted(world.values(), reverse=True)
    by_id = {d["id"]: d for d in data}
    failed = by_id[world["failed"]]
    assert {k: failed[k] for k in ("queue", "task", "state", "attempt", "max_attempts")} == {
        "queue": "emails",
        "task": "emails.send",
        "state": "failed",
        "attempt": 3,
        "max_attempts": 3,
    }
    assert failed["last_error"] == "ConnectionRefusedError: refused #3"
    for d in data:  # dates are ISO 8601 strings with a time zone
        for key in ("run_at", "created_at"):
            assert datetime.fromisoformat(d[key]).tzinfo is not None
            assert "T" in d[key]
    assert by_id[world["queued"]]["finished_at"] is None
    assert datetime.fromisoformat(by_id[world["succeeded"]]["finished_at"])


def test_jobs_list_long_names_fit_80_columns(
    pg_dsn: str, schema: str, papp: App, conn: Conn
) -> None:
    queue = "q" * 63
    task = "pkg." + "very_long_module_name." * 8 + "task"
    job_id = papp.enqueue(task, queue=queue)
    message = "first line of a long error " * 10 + "\nsecond line\tand a tab"
    error = {"attempt": 1, "kind": "error", "message": message, "traceback": TRACEBACK}
    conn.execute(
        f"UPDATE \"{schema}\".jobs SET state = 'failed', errors = jsonb_build_array(%s::jsonb) "
        "WHERE id = %s",
        (json.dumps(error), job_id),
    )
    out = ok(pg_dsn, schema, "jobs", "list")
    lines = out.rstrip("\n").splitlines()
    assert len(lines) == 2  # the error's newline and tab did not break the row
    assert all(len(line) <= 80 for line in lines)
    row = lines[1].split()
    assert row[0] == str(job_id) and row[3] == "failed"
    assert row[1].startswith("qqq") and row[1].endswith("…")
    assert row[2].startswith("pkg.very") and row[2].endswith("…")
    assert lines[1].endswith("…") and "first line" in lines[1]


# -- jobs show --------------------------------------------------------------------------------


def test_jobs_show_failed(pg_dsn: str, schema: str, world: dict[str, int]) -> None:
    out = ok(pg_dsn, schema, "jobs", "show", str(world["failed"]))
    assert out.splitlines()[0] == f"job {world['failed']}: emails.send on queue emails"
    fields = dict(
        line.strip().split(None, 1) for line in out.splitlines()[1:] if line.startswith("  ")
    )
    assert fields["state"] == "failed"
    assert fields["args"] == '["x@y.z"]' and fields["kwargs"] == "{}"
    assert fields["result"] == "-"
    assert "attempt           3/3  (errors 3, lost 0)" in out
    assert "errors (3):" in out
    for n in (1, 2, 3):  # every error, with its traceback
        assert f"#{n}  attempt {n}  error  at 2026-11-26T10:00:0{n}+00:00" in out
        assert f"\n    ConnectionRefusedError: refused #{n}\n" in out  # its type named once
    assert out.count("| Traceback (most recent call last):") == 3
    assert out.count('|   File "app/emails.py", line 12, in send') == 3


def test_jobs_show_succeeded_running_and_scheduled(
    pg_dsn: str, schema: str, world: dict[str, int]
) -> None:
    out = ok(pg_dsn, schema, "jobs", "show", str(world["succeeded"]))
    assert '  result            {"sent": true}' in out
    assert '  kwargs            {"to": "a@b.c"}' in out
    assert "errors (0)" in out
    out = ok(pg_dsn, schema, "jobs", "show", str(world["running"]))
    assert "  worker            h:1:abcd" in out
    assert "  lease until" in out and "(in " in out
    out = ok(pg_dsn, schema, "jobs", "show", str(world["scheduled"]))
    run_at = next(line for line in out.splitlines() if line.startswith("  run at"))
    assert "(in 59." in run_at or "(in 60.0m)" in run_at


def test_jobs_show_json(pg_dsn: str, schema: str, world: dict[str, int], conn: Conn) -> None:
    data = json.loads(ok(pg_dsn, schema, "jobs", "show", str(world["failed"]), "--json"))
    row = job_row(conn, schema, world["failed"])
    assert set(data) == set(row)
    for key, value in row.items():
        if isinstance(value, datetime):
            assert datetime.fromisoformat(data[key]) == value, key
        else:
            assert data[key] == value, key
    assert [e["traceback"] for e in data["errors"]] == [TRACEBACK] * 3
    assert data["started_at"] is not None and data["cancel_requested_at"] is None


# -- jobs retry -------------------------------------------------------------------------------


def test_jobs_retry_ids_table_and_json(
    pg_dsn: str, schema: str, world: dict[str, int], conn: Conn
) -> None:
    failed, done = world["failed"], world["succeeded"]
    rows = table_lines(ok(pg_dsn, schema, "jobs", "retry", str(failed), str(done)))
    assert rows[0] == ["ID", "RETRIED", "NOTE"]
    assert rows[1] == [str(failed), "yes"]
    assert rows[2][:2] == [str(done), "no"] and "it is succeeded" in " ".join(rows[2])
    row = job_row(conn, schema, failed)
    assert (row["state"], row["error_count"], row["finished_at"]) == ("queued", 0, None)
    assert job_row(conn, schema, done)["state"] == "succeeded"

    data = json.loads(ok(pg_dsn, schema, "jobs", "retry", str(failed), "--json"))
    assert data == [{"id": failed, "retried": False, "state": "queued"}]


def test_jobs_retry_failed(
    pg_dsn: str, schema: str, world: dict[str, int], papp: App, conn: Conn
) -> None:
    other = papp.enqueue("other.task", queue="emails")
    conn.execute(
        f"UPDATE \"{schema}\".jobs SET state = 'failed', finished_at = now() WHERE id = %s",
        (other,),
    )
    out = ok(pg_dsn, schema, "jobs", "retry", "--failed", "--queue", "reports")
    assert out == "retried 0 failed jobs\n"
    out = ok(pg_dsn, schema, "jobs", "retry", "--failed", "--task", "emails.send", "--json")
    assert json.loads(out) == {"retried": 1, "queue": None, "task": "emails.send"}
    assert papp.admin.job(world["failed"])["state"] == "queued"
    assert papp.admin.job(other)["state"] == "failed"
    assert ok(pg_dsn, schema, "jobs", "retry", "--failed") == "retried 1 failed job\n"
    assert papp.admin.job(other)["state"] == "queued"


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ([], "give the ids of the jobs to retry, or --failed"),
        (["--failed", "ID"], "give job ids or --failed, not both"),
        (["ID", "--queue", "emails"], "--queue and --task go with --failed"),
        (["ID", "--task", "emails.send"], "--queue and --task go with --failed"),
    ],
)
def test_jobs_retry_usage_errors(
    pg_dsn: str, schema: str, world: dict[str, int], conn: Conn, options: list[str], says: str
) -> None:
    before = snapshot(conn, schema)
    args = [str(world["failed"]) if o == "ID" else o for o in options]
    code, out, err = cli(pg_dsn, schema, "jobs", "retry", *args)
    assert code == 2 and out == ""
    assert (
        says in err
        and "Usage: " in err
        and "jobs retry [OPTIONS]" in err
        and "Traceback" not in err
    )
    assert snapshot(conn, schema) == before


# -- jobs cancel ------------------------------------------------------------------------------


def test_jobs_cancel_table_and_json(
    pg_dsn: str, schema: str, world: dict[str, int], conn: Conn
) -> None:
    ids = [world["queued"], world["running"], world["succeeded"]]
    rows = table_lines(ok(pg_dsn, schema, "jobs", "cancel", *map(str, ids)))
    assert rows[0] == ["ID", "STATE", "NOTE"]
    assert rows[1] == [str(ids[0]), "cancelled"]
    assert rows[2][:2] == [str(ids[1]), "cancelling"] and "asked to stop" in " ".join(rows[2])
    assert rows[3][:2] == [str(ids[2]), "succeeded"] and "already" in rows[3]
    assert job_row(conn, schema, ids[0])["state"] == "cancelled"
    running = job_row(conn, schema, ids[1])
    assert running["state"] == "running" and running["cancel_requested_at"] is not None
    assert job_row(conn, schema, ids[2])["state"] == "succeeded"

    out = ok(pg_dsn, schema, "jobs", "cancel", str(world["scheduled"]), "--json")
    assert json.loads(out) == [{"id": world["scheduled"], "state": "cancelled"}]
    assert job_row(conn, schema, world["scheduled"])["state"] == "cancelled"


# -- queues -----------------------------------------------------------------------------------


def test_queues_pause_resume_and_list(
    pg_dsn: str, schema: str, world: dict[str, int], conn: Conn
) -> None:
    out = ok(pg_dsn, schema, "queues", "pause", "emails")
    assert out.startswith("paused queue emails") and len(out.splitlines()) == 1
    out = ok(pg_dsn, schema, "queues", "pause", "not_yet_used", "--json")
    assert json.loads(out) == {"queue": "not_yet_used", "paused": True}
    paused = conn.execute(
        f'SELECT name FROM "{schema}".queues WHERE paused_at IS NOT NULL ORDER BY name'
    ).fetchall()
    assert paused == [("emails",), ("not_yet_used",)]

    listed = ok(pg_dsn, schema, "queues", "list")
    rows = table_lines(listed)
    assert rows[0][0] == "QUEUE" and rows[0][-1] == "PAUSED"
    assert {r[0]: r[-1] == "yes" for r in rows[1:]} == {
        "default": False,
        "emails": True,
        "not_yet_used": True,
        "reports": False,
    }
    status = table_lines(ok(pg_dsn, schema, "status"))  # one table, two names
    assert [r[:5] + r[6:] for r in status] == [r[:5] + r[6:] for r in rows]  # OLDEST ticks
    data = json.loads(ok(pg_dsn, schema, "queues", "list", "--json"))
    assert [(d["queue"], d["paused"], d["failed"]) for d in data] == [
        ("default", False, 0),
        ("emails", True, 1),
        ("not_yet_used", True, 0),
        ("reports", False, 0),
    ]

    assert ok(pg_dsn, schema, "queues", "resume", "emails") == "resumed queue emails\n"
    assert ok(pg_dsn, schema, "queues", "resume", "emails") == "queue emails was not paused\n"
    out = ok(pg_dsn, schema, "queues", "resume", "not_yet_used", "--json")
    assert json.loads(out) == {"queue": "not_yet_used", "resumed": True}
    out = ok(pg_dsn, schema, "queues", "resume", "reports", "--json")
    assert json.loads(out) == {"queue": "reports", "resumed": False}
    assert conn.execute(
        f'SELECT count(*) FROM "{schema}".queues WHERE paused_at IS NOT NULL'
    ).fetchone() == (0,)


# -- workers ----------------------------------------------------------------------------------


def test_workers_table_and_json(
    pg_dsn: str, schema: str, world: dict[str, int], conn: Conn
) -> None:
    assert ok(pg_dsn, schema, "workers").startswith("no workers")
    assert json.loads(ok(pg_dsn, schema, "workers", "--json")) == []
    long_id = "a-rather-long-hostname.eu-west-1.compute.internal:123456:0badcafe"
    conn.execute(
        f'INSERT INTO "{schema}".workers (id, host, pid, queues, concurrency, started_at, '
        "last_heartbeat_at) VALUES "
        "('h:1:abcd', 'h', 1, '{reports,default}', 10, now() - interval '3 hours', "
        "now() - interval '2 seconds'), "
        "(%s, 'a-rather-long-hostname.eu-west-1.compute.internal', 123456, "
        "'{emails,reports,default,some_other_queue,and_another}', 4, now(), now())",
        (long_id,),
    )
    rows = table_lines(ok(pg_dsn, schema, "workers"))
    assert rows[0] == ["WORKER", "QUEUES", "RUNNING", "HEARTBEAT", "UP"]
    assert rows[1][:3] == ["h:1:abcd", "reports,default", "1/10"]  # the running job
    assert rows[1][3].endswith("s") and rows[1][4] == "ago" and rows[1][5].endswith("h")
    assert rows[2][0].startswith("a-rather-long") and rows[2][0].endswith("…")
    assert rows[2][2] == "0/4"

    data = json.loads(ok(pg_dsn, schema, "workers", "--json"))
    assert [(d["id"], d["pid"], d["queues"], d["running"]) for d in data] == [
        ("h:1:abcd", 1, ["reports", "default"], 1),
        (long_id, 123456, ["emails", "reports", "default", "some_other_queue", "and_another"], 0),
    ]
    assert 2 <= data[0]["heartbeat_age_seconds"] < 60  # a number, not a string
    assert datetime.fromisoformat(data[0]["last_heartbeat_at"]).tzinfo is not None


# -- prune ------------------------------------------------------------------------------------


def test_prune_table_and_json(
    pg_dsn: str, schema: str, world: dict[str, int], conn: Conn, papp: App
) -> None:
    cancelled = papp.enqueue("t")
    papp.admin.cancel([cancelled])
    conn.execute(
        f"UPDATE \"{schema}\".jobs SET finished_at = now() - interval '8 days' "
        "WHERE state IN ('succeeded', 'failed', 'cancelled')"
    )
    recent = papp.enqueue("t")
    papp.admin.cancel([recent])  # finished just now: kept

    def left() -> set[int]:
        return {r[0] for r in conn.execute(f'SELECT id FROM "{schema}".all_jobs')}

    everything = left()
    out = ok(pg_dsn, schema, "prune", "--older-than", "2w")
    assert out == "pruned 0 jobs (succeeded, failed, cancelled) finished more than 2w ago\n"
    out = ok(pg_dsn, schema, "prune", "--older-than", "7d", "--state", "succeeded")
    assert out == "pruned 1 job (succeeded) finished more than 7d ago\n"
    assert left() == everything - {world["succeeded"]}
    out = ok(pg_dsn, schema, "prune", "--older-than", "1h", "--state", "failed",
             "--state", "cancelled", "--json")  # fmt: skip
    assert json.loads(out) == {
        "pruned": 2,
        "older_than_seconds": 3600.0,
        "states": ["failed", "cancelled"],
    }
    unfinished = {world["queued"], world["running"], world["scheduled"]}
    assert left() == unfinished | {recent}
    out = ok(pg_dsn, schema, "prune", "--older-than", "0", "--json")
    assert json.loads(out)["pruned"] == 1
    assert left() == unfinished  # queued and running jobs are never pruned


# -- bad input: one line, exit 1, nothing written ---------------------------------------------

BAD = [
    (["jobs", "show", "999999"], "no job with id 999999"),
    (["jobs", "show", "0"], "a job id is a positive whole number"),
    (["jobs", "show", "999999", "--json"], "no job with id 999999"),
    (["jobs", "retry", "FAILED", "999999"], "no job with id 999999"),
    (["jobs", "retry", "--failed", "--queue", "nope"], "no queue named 'nope'"),
    (["jobs", "retry", "--failed", "--task", "bad task"], "invalid task name"),
    (["jobs", "cancel", "QUEUED", "999999"], "no job with id 999999"),
    (["jobs", "cancel", "QUEUED", "0"], "a job id is a positive whole number"),
    (["jobs", "list", "--queue", "nope"], "no queue named 'nope'"),
    (["jobs", "list", "--queue", "bad queue"], "invalid queue name"),
    (["jobs", "list", "--state", "bogus"], "unknown state 'bogus'"),
    (["jobs", "list", "--limit", "0"], "limit must be"),
    (["queues", "resume", "nope"], "no queue named 'nope'"),
    (["queues", "pause", "bad;queue"], "invalid queue name"),
    (["queues", "resume", "bad;queue", "--json"], "invalid queue name"),
    (["prune", "--older-than", "0", "--state", "queued"], "finished states only"),
    (["prune", "--older-than", "0", "--state", "succeeded", "--state", "running"], "finished"),
]


@pytest.mark.parametrize(("command", "says"), BAD, ids=[" ".join(c) for c, _ in BAD])
def test_bad_input_is_one_line_and_writes_nothing(
    pg_dsn: str, schema: str, world: dict[str, int], conn: Conn, command: list[str], says: str
) -> None:
    conn.execute(f"UPDATE \"{schema}\".jobs SET finished_at = now() - interval '1 year'")
    before = snapshot(conn, schema)
    args = [str(world[c.lower()]) if c in ("FAILED", "QUEUED") else c for c in command]
    assert_one_line_error(*cli(pg_dsn, schema, *args), says=says)
    assert snapshot(conn, schema) == before


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("7x", "invalid duration '7x' for --older-than"),
        ("", "invalid duration '' for --older-than"),
        ("-1d", "invalid duration '-1d'"),
        ("7 days", "invalid duration '7 days'"),
        ("1e5", "invalid duration '1e5'"),
        ("99999999w", "too long"),
    ],
)
def test_bad_duration_is_a_one_line_usage_error_that_writes_nothing(
    pg_dsn: str, schema: str, world: dict[str, int], conn: Conn, value: str, says: str
) -> None:
    conn.execute(f"UPDATE \"{schema}\".jobs SET finished_at = now() - interval '1 year'")
    before = snapshot(conn, schema)
    code, out, err = cli(pg_dsn, schema, "prune", "--older-than", value)
    assert_one_line_error(code, out, err, says=says, exit_code=2)
    assert snapshot(conn, schema) == before


def test_unknown_id_real_script(pg_dsn: str, schema: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    proc = subprocess.run(
        [*PGQUEUE, "--dsn", pg_dsn, "--schema", schema, "jobs", "show", "424242"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert_one_line_error(proc.returncode, proc.stdout, proc.stderr, says="no job with id 424242")


@pytest.mark.parametrize(
    "command",
    [
        ["jobs", "list"],
        ["jobs", "show", "1"],
        ["jobs", "retry", "--failed"],
        ["jobs", "cancel", "1"],
        ["queues", "list"],
        ["queues", "pause", "q"],
        ["workers"],
        ["prune", "--older-than", "1d"],
    ],
)
def test_commands_on_an_unmigrated_schema(
    pg_dsn: str, unmigrated_schema: str, conn: Conn, command: list[str]
) -> None:
    assert_one_line_error(*cli(pg_dsn, unmigrated_schema, *command), says="pgqueue migrate")
    row = conn.execute("SELECT to_regnamespace(%s)", (f'"{unmigrated_schema}"',)).fetchone()
    assert row == (None,)  # nothing written, not even the schema


# -- help -------------------------------------------------------------------------------------

SUBCOMMANDS = [
    ["jobs", "list"],
    ["jobs", "show"],
    ["jobs", "retry"],
    ["jobs", "cancel"],
    ["queues", "list"],
    ["queues", "pause"],
    ["queues", "resume"],
    ["jobs"],
    ["queues"],
    ["workers"],
    ["prune"],
]


@pytest.mark.parametrize("command", SUBCOMMANDS, ids=[" ".join(c) for c in SUBCOMMANDS])
def test_help_has_examples(command: list[str]) -> None:
    code, out, err = run_cli(*command, "--help")
    assert (code, err) == (0, "")
    assert "Example" in out
    examples = out.split("Example", 1)[1]
    assert f"pgqueue {' '.join(command)}" in examples  # a command line to copy
    assert all(len(line) <= 80 for line in out.splitlines())
