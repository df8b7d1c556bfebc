"""AFTER: the same app on pgqueue. Workers import it with --app tasks:app."""

from __future__ import annotations

import uuid
from decimal import Decimal

import psycopg

from pgqueue import App, JobContext

app = App()  # PGQUEUE_DSN / PGQUEUE_SCHEMA (or DATABASE_URL): the app's own PostgreSQL

TABLE = """CREATE TABLE IF NOT EXISTS example_evaluations (
    id uuid PRIMARY KEY, status text NOT NULL, score numeric)"""


def gpu_busy(attempt: int) -> bool:
    return attempt == 1  # for the example: the first attempt finds the GPU pool busy


@app.task(bind=True, max_attempts=6, queue="evals")
def process_evaluation(ctx: JobContext, eval_id: uuid.UUID, threshold: Decimal) -> dict[str, str]:
    if gpu_busy(ctx.attempt):
        ctx.retry(countdown=0.5)  # Celery's self.retry(countdown=...): raises, uses an attempt
    with psycopg.connect(app.dsn) as conn:
        row = conn.execute(
            "SELECT status FROM example_evaluations WHERE id = %s", (eval_id,)
        ).fetchone()
        if row is None:  # cannot happen when enqueued in the same transaction as the row
            raise LookupError(f"no evaluation {eval_id}")
        score = (Decimal(eval_id.int % 1000) / 1000).quantize(Decimal("0.001"))
        status = "passed" if score >= threshold else "rejected"
        conn.execute(
            "UPDATE example_evaluations SET status = %s, score = %s WHERE id = %s",
            (status, score, eval_id),
        )
    return {"eval": str(eval_id), "score": str(score), "status": status}


def submit(conn: psycopg.Connection, eval_id: uuid.UUID) -> int:
    """The web request: the evaluation row and its job commit together (or neither)."""
    with conn.transaction():
        conn.execute("INSERT INTO example_evaluations (id, status) VALUES (%s, 'new')", (eval_id,))
        job = process_evaluation.apply_async((eval_id, Decimal("0.75")), connection=conn)
    return int(job)
