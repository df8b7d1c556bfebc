"""From Celery: process_evaluation.delay(eval_id) on pgqueue, run for real."""

from __future__ import annotations

import sys
import uuid
from decimal import Decimal
from pathlib import Path

import psycopg

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from _runner import app_settings, migrate, worker  # noqa: E402


def main() -> None:
    dsn, schema = app_settings()
    migrate(dsn, schema)
    from tasks import TABLE, app, process_evaluation, submit

    first, second = uuid.UUID(int=0xA1_0999), uuid.UUID(int=0xB2_0100)
    with psycopg.connect(dsn) as conn:
        conn.execute(TABLE)
        conn.execute("DELETE FROM example_evaluations")
        conn.commit()
        # 1. the call as it was under Celery, unchanged (the row committed beforehand)
        conn.execute("INSERT INTO example_evaluations (id, status) VALUES (%s, 'new')", (first,))
        conn.commit()
        job = process_evaluation.delay(first, Decimal("0.75"))
        # 2. better than Celery could: the job commits with the row that it needs
        second_job = app.job(submit(conn, second))

    with worker("tasks:app", dsn, schema, "-q", "evals"):
        print("delay ->", job.get(timeout=60))
        print("apply_async in the transaction ->", second_job.get(timeout=60))
    row = app.admin.job(job)
    print(f"attempts: {row['attempt']}, first error: {row['errors'][0]['kind']}")
    print(f"arguments back as types: {[type(a).__name__ for a in row['args']]}")
    app.close()


if __name__ == "__main__":
    main()
