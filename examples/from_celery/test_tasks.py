"""The app's own tests (run with: pytest test_tasks.py --pgqueue-app tasks:app)."""

from __future__ import annotations

import uuid
from decimal import Decimal

import psycopg
import pytest
from tasks import TABLE, process_evaluation, submit

from pgqueue import App, Retry
from pgqueue.testing import assert_enqueued, assert_not_enqueued, eager


def test_unit_first_attempt_asks_for_a_retry(pgqueue_eager: App) -> None:
    # eager mode: no database; no retries either, so the Retry comes out of the call
    with pytest.raises(Retry):
        process_evaluation.delay(uuid.uuid4(), Decimal("0.5"))


def test_submit_commits_the_row_and_the_job_together(pgqueue_app: App, pgqueue_dsn: str) -> None:
    eval_id = uuid.uuid4()
    with psycopg.connect(pgqueue_dsn) as conn:
        conn.execute(TABLE)
        conn.commit()
        job = submit(conn, eval_id)
    assert_enqueued(process_evaluation, [eval_id, Decimal("0.75")])
    first = pgqueue_app.drain()  # attempt 1: "GPU busy", retry in 0.5 s
    assert [r.state for r in first.runs] == ["retry"]
    second = pgqueue_app.drain(with_scheduled=True)  # no need to wait out the countdown
    assert [r.state for r in second.runs] == ["succeeded"]
    assert pgqueue_app.job(job).get(timeout=0)["eval"] == str(eval_id)
    assert_not_enqueued(process_evaluation)
    with psycopg.connect(pgqueue_dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM example_evaluations WHERE id = %s", (eval_id,))


def test_eager_propagate_false_records_the_failure(pgqueue_eager: App) -> None:
    with eager(pgqueue_eager, propagate=False) as runner:
        process_evaluation.delay(uuid.uuid4(), Decimal("0.5"))
    assert runner.jobs[0].state == "failed" and runner.jobs[0].error is not None
