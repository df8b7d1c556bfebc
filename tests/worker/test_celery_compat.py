"""Coming from Celery: delay, apply_async, Job.get, bind=True with ctx.retry(countdown)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from pgqueue import App, Cancel, InvalidJobError, JobCancelled, JobContext, Retry, Snooze
from tests.worker.inproc import running
from tests.worker.procs import job, wait_state

Conn = psycopg.Connection[Any]


def test_delay_apply_async_and_get(app: App, conn: Conn, schema: str) -> None:
    @app.task(bind=True, max_attempts=3)
    def process_evaluation(ctx: JobContext, eval_id: int) -> dict[str, int]:
        if ctx.attempt == 1:
            ctx.retry(countdown=0.2, reason="the GPU pool is busy")  # raises Retry
        return {"eval": eval_id, "attempt": ctx.attempt}

    first = process_evaluation.delay(7)
    later = process_evaluation.apply_async((8,), countdown=3600, queue="evals", priority=5)
    at = datetime.now(UTC) + timedelta(days=1)
    eta = process_evaluation.apply_async(kwargs={"eval_id": 9}, eta=at, dedupe_key="e9")
    with running(app):
        assert first.get(timeout=30) == {"eval": 7, "attempt": 2}
    row = job(conn, schema, first)
    assert [(e["kind"], e["message"]) for e in row["errors"]] == [
        ("retry", "Retry: the GPU pool is busy")
    ]
    assert row["error_count"] == 1
    queued = job(conn, schema, later)
    assert (queued["queue"], queued["priority"], queued["args"]) == ("evals", 5, [8])
    assert queued["run_at"] > datetime.now(UTC) + timedelta(minutes=59)
    scheduled = job(conn, schema, eta)
    assert scheduled["run_at"] == at and scheduled["kwargs"] == {"eval_id": 9}
    assert scheduled["dedupe_key"] == "e9"


def test_a_retry_past_max_attempts_fails_the_job(app: App, conn: Conn, schema: str) -> None:
    @app.task(max_attempts=2)
    def flaky() -> None:
        raise Retry(after=0, reason="not yet")

    job_id = flaky.delay()
    with running(app):
        row = wait_state(conn, schema, job_id, "failed", timeout=30)
    assert [e["kind"] for e in row["errors"]] == ["retry", "retry"]


def test_apply_async_refuses_what_it_does_not_have(app: App, conn: Conn, schema: str) -> None:
    @app.task
    def t() -> None: ...

    with pytest.raises(InvalidJobError, match="no option 'expires'"):
        t.apply_async((), expires=60)
    with pytest.raises(InvalidJobError, match="countdown or eta"):
        t.apply_async(countdown=1, eta=datetime.now(UTC))
    with pytest.raises(InvalidJobError, match="list or tuple"):
        t.apply_async("abc")
    assert conn.execute(f'SELECT count(*) FROM "{schema}".jobs').fetchone() == (0,)
    with pytest.raises(ValueError, match="0 to 100 years"):
        Retry(after=float("inf"))


def test_snooze_uses_no_attempt_and_cancel_ends_cancelled(
    app: App, conn: Conn, schema: str
) -> None:
    """Handler control: Snooze(seconds) puts the job back without using an attempt;
    Cancel(reason) ends it cancelled, not retried; both fenced like every write."""

    @app.task(bind=True, max_attempts=1)  # a single attempt: a snooze must not use it
    def wait_for_gpu(ctx: JobContext) -> str:
        if ctx.attempt < 3:
            raise Snooze(0.1)
        return f"ran on claim {ctx.attempt}"

    @app.task(max_attempts=5)
    def obsolete() -> None:
        raise Cancel("the evaluation was deleted")

    snoozy, gone = wait_for_gpu.delay(), obsolete.delay()
    with running(app):
        assert snoozy.get(timeout=30) == "ran on claim 3"
        with pytest.raises(JobCancelled, match="the evaluation was deleted"):
            gone.get(timeout=30)
    row = job(conn, schema, snoozy)
    assert (row["attempt"], row["error_count"], row["lost_count"], row["errors"]) == (3, 0, 0, [])
    row = job(conn, schema, gone)
    assert (row["state"], row["attempt"]) == ("cancelled", 1)
    assert [(e["kind"], e["message"]) for e in row["errors"]] == [
        ("cancelled", "cancelled by the handler: the evaluation was deleted")
    ]


def test_a_job_that_snoozes_too_often_fails(app: App, conn: Conn, schema: str) -> None:
    @app.task
    def forever() -> None:
        raise Snooze(0)

    job_id = forever.delay()
    # as if it had already snoozed 999 times (claims that used no attempt)
    conn.execute(f'UPDATE "{schema}".jobs SET attempt = 999 WHERE id = %s', (job_id,))
    with running(app):
        row = wait_state(conn, schema, job_id, "failed", timeout=30)
    assert [e["kind"] for e in row["errors"]] == ["snoozed"]
    assert "snoozed too often: 1000 claims used no attempt" in row["errors"][0]["message"]
    with pytest.raises(ValueError, match="from 0 to a year"):
        Snooze(float("nan"))
