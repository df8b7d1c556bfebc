"""Every example in examples/ runs for real against the test database."""

from __future__ import annotations

import ast
import os
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
        conn.execute("DROP TABLE IF EXISTS example_orders, example_signups, example_evaluations")
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
        "fan_out_fan_in",
        "from_celery",
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
