"""Periodic jobs: two workers share a schedule and still make exactly one job per tick."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import psycopg

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from _runner import app_settings, migrate, worker  # noqa: E402

TICKS = 4


def main() -> None:
    dsn, schema = app_settings()
    migrate(dsn, schema)
    from tasks import app, heartbeat_report

    count = f"""SELECT count(*) FROM "{schema}".all_jobs
                WHERE task = %s AND state = 'succeeded'"""
    # Two workers, as two machines would run them: both schedule every periodic task.
    first = worker("tasks:app", dsn, schema, "-q", "ticks")
    second = worker("tasks:app", dsn, schema, "-q", "ticks")
    with first, second, psycopg.connect(dsn, autocommit=True) as conn:
        deadline = time.monotonic() + 60
        done = 0
        while done < TICKS and time.monotonic() < deadline:
            time.sleep(0.2)  # an example watching the clock; tests use pgqueue's waits
            row = conn.execute(count, (heartbeat_report.name,)).fetchone()
            done = row[0] if row else 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            f"""SELECT dedupe_key, result FROM "{schema}".all_jobs
                WHERE task = %s ORDER BY run_at""",
            (heartbeat_report.name,),
        ).fetchall()
        schedules = conn.execute(
            f'SELECT name, last_tick FROM "{schema}".periodic ORDER BY name'
        ).fetchall()
    keys = [key for key, _ in rows]
    print(f"schedules: {', '.join(name for name, _ in schedules)}")
    for key, result in rows[:TICKS]:
        print(f"  {key}  ran at {result}")
    print(f"ticks: {len(set(keys))}, jobs: {len(keys)} (one job per tick with two workers)")
    app.close()
    if len(keys) < TICKS or len(set(keys)) != len(keys):
        sys.exit("expected one job per tick")


if __name__ == "__main__":
    main()
