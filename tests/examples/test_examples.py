"""Every example in examples/ runs for real against the test database."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
EXAMPLES = ROOT / "examples"


@pytest.fixture(autouse=True)
def _drop_example_tables(pg_dsn: str) -> Iterator[None]:
    """The examples make tables of their own ("the application's"); drop them after."""
    yield
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            "DROP TABLE IF EXISTS example_orders, example_signups, example_eval_steps, "
            "example_eval_results, example_outbox_orders, example_flask_signups, "
            "example_evaluations"
        )
        conn.execute("DROP FUNCTION IF EXISTS example_signups_enqueue()")


def run_example(name: str, dsn: str, schema: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGQUEUE_")}
    env.update(PGQUEUE_DSN=dsn, PGQUEUE_SCHEMA=schema, PYTHONUNBUFFERED="1")
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name / "run.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.stdout


def test_every_example_has_a_readme_and_a_test() -> None:
    names = sorted(p.name for p in EXAMPLES.iterdir() if (p / "run.py").exists())
    assert names == [  # add a test below for each new one
        "django_app",
        "error_reporting",
        "fan_out_fan_in",
        "fastapi_outbox",
        "flask_app",
        "from_celery",
        "long_evaluation",
        "periodic",
        "plain_psycopg",
        "sql_trigger",
    ]
    assert all((EXAMPLES / n / "README.md").exists() for n in names)


def test_plain_psycopg(pg_dsn: str, unmigrated_schema: str) -> None:
    out = run_example("plain_psycopg", pg_dsn, unmigrated_schema)
    assert "order 2 rolled back (payment declined)" in out
    assert "jobs for send_confirmation after the rollback: 1" in out
    assert "result: {'order': 1, 'sent_to': 'ada@example.com'}" in out


def test_sql_trigger(pg_dsn: str, unmigrated_schema: str) -> None:
    out = run_example("sql_trigger", pg_dsn, unmigrated_schema)
    assert "inserted 2 signups" in out
    assert "result: welcomed ada@example.com (signup" in out
    assert "result: welcomed grace@example.com (signup" in out


def test_long_evaluation(pg_dsn: str, unmigrated_schema: str) -> None:
    """kill -9 of the worker mid-evaluation: it resumes after its last checkpoint, and its
    transactional result row exists once."""
    out = run_example("long_evaluation", pg_dsn, unmigrated_schema)
    assert re.search(r"killed the worker after \d+ of 10 steps", out), out
    resumed = re.search(r"attempt 2: resuming at step (\d+)", out)
    assert resumed and int(resumed.group(1)) >= 5, out  # not from the start
    assert "result: {'mean':" in out
    assert "steps run: 10 of 10" in out
    twice = re.search(r"run twice: (.*)", out)
    assert twice and (twice.group(1) == "none" or len(twice.group(1).split(",")) == 1), out
    assert "result rows: 1" in out and "attempts: 2" in out


def test_error_reporting(pg_dsn: str, unmigrated_schema: str) -> None:
    out = run_example("error_reporting", pg_dsn, unmigrated_schema)
    assert "attempt 1 of job 1 failed; retrying" in out
    assert "reported: ValueError: card declined for order 42 {'task': 'tasks.charge'" in out
    assert "'attempts': 2}" in out
    assert "job.result(): JobFailed: ValueError: card declined for order 42" in out


def test_django_app(pg_dsn: str, unmigrated_schema: str) -> None:
    pytest.importorskip("django")
    try:
        out = run_example("django_app", pg_dsn, unmigrated_schema)
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:  # the project's own tables
            conn.execute(f'DROP SCHEMA IF EXISTS "{unmigrated_schema}_site" CASCADE')
    assert "migrate: pgqueue schema" in out and "at revision" in out
    assert "POST /orders/ ada: 201" in out
    assert "POST /orders/ bob: 402 payment declined" in out
    assert "orders for bob: 0" in out
    assert "jobs for send_confirmation: 1" in out
    assert "pgqueue_work --burst: exit 0: burst: 1 succeeded, 0 failed" in out
    assert "confirmed: True; job succeeded, result {'order': " in out
    assert "admin jobs page: 200, lists orders.tasks.send_confirmation: True" in out


def test_fastapi_outbox(pg_dsn: str, unmigrated_schema: str) -> None:
    pytest.importorskip("fastapi")
    out = run_example("fastapi_outbox", pg_dsn, unmigrated_schema)
    for path in ("/orders", "/async/orders"):
        assert f"POST {path}: 201" in out
        assert f"POST {path} declined: 402 payment declined" in out
    assert "orders for bob: 0; jobs: 2 (the two committed ones: 2)" in out
    assert "'sent_to': 'ada+sync@example.com'}" in out
    assert "'sent_to': 'ada+async@example.com'}" in out


def test_flask_app(pg_dsn: str, unmigrated_schema: str) -> None:
    pytest.importorskip("flask")
    out = run_example("flask_app", pg_dsn, unmigrated_schema)
    assert "POST /signups ada: 201" in out
    assert "POST /signups not-an-address: 400" in out
    assert "rows for the bad request: 0; jobs: 1" in out
    assert "result: welcomed ada@example.com (signup" in out
    assert out.count("GET /jobs/<id>:") == 2
    assert out.index("GET /jobs/<id>: queued") < out.index("GET /jobs/<id>: succeeded")


def test_periodic(pg_dsn: str, unmigrated_schema: str) -> None:
    out = run_example("periodic", pg_dsn, unmigrated_schema)
    assert "schedules: tasks.daily_report, tasks.heartbeat_report" in out
    assert "(one job per tick with two workers)" in out
    ticks = [line for line in out.splitlines() if line.startswith("ticks: ")]
    assert len(ticks) == 1
    n_ticks, n_jobs = (int(part.split(": ")[1]) for part in ticks[0].split(" (")[0].split(", "))
    assert n_ticks == n_jobs >= 4


def test_fan_out_fan_in(pg_dsn: str, unmigrated_schema: str) -> None:
    out = run_example("fan_out_fan_in", pg_dsn, unmigrated_schema)
    assert "fan-out: 5 scoring jobs; summary job 6 is waiting" in out
    assert "fan-in: {'words': 21, 'documents': 5}" in out
    assert "second summary: cancelled (dependency)" in out
    assert "second batch parts: succeeded, succeeded, failed" in out


def test_from_celery(pg_dsn: str, unmigrated_schema: str) -> None:
    out = run_example("from_celery", pg_dsn, unmigrated_schema)
    assert "delay -> {'eval': '00000000-0000-0000-0000-000000a10999', 'score': '0.753'" in out
    assert "in the transaction -> {'eval': '00000000-0000-0000-0000-000000b20100'" in out
    assert "attempts: 2, first error: retry" in out
    assert "arguments back as types: ['UUID', 'Decimal']" in out
    # the Celery code is shown, not run: it must still be valid Python
    ast.parse((EXAMPLES / "from_celery" / "before_celery.py").read_text())


def test_from_celery_own_tests_use_the_pytest_plugin(pg_dsn: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGQUEUE_")}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_tasks.py",
         "--pgqueue-app", "tasks:app", f"--pgqueue-dsn={pg_dsn}"],
        cwd=EXAMPLES / "from_celery", env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 passed" in proc.stdout
