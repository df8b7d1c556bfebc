"""ctx.checkpoint(state): stored at once, fenced; the next attempt starts with it."""

from __future__ import annotations

import threading
from typing import Any

import psycopg

from pgqueue import App, InvalidJobError, JobContext, LeaseLost, Retry
from tests.helpers import wait_until
from tests.worker.inproc import running
from tests.worker.procs import job, wait_state

Conn = psycopg.Connection[Any]


def test_a_retry_starts_from_the_checkpoint_and_a_first_run_from_none(
    app: App, conn: Conn, schema: str
) -> None:
    seen: list[Any] = []

    @app.task(name="resumable", pass_context=True)
    def resumable(ctx: JobContext) -> Any:
        seen.append(ctx.checkpoint_state)
        if ctx.attempt == 1:
            ctx.checkpoint({"next": 4, "partial": [1, 2, 3]})
            raise Retry(after=0)
        return ctx.checkpoint_state

    job_id = resumable.defer()
    with running(app):
        row = wait_state(conn, schema, job_id, "succeeded")
    assert seen == [None, {"next": 4, "partial": [1, 2, 3]}]
    assert row["result"] == {"next": 4, "partial": [1, 2, 3]} and row["attempt"] == 2
    assert app.admin.job(job_id)["checkpoint"] == {"next": 4, "partial": [1, 2, 3]}


def test_bad_state_is_refused_and_nothing_is_stored(app: App, conn: Conn, schema: str) -> None:
    app.limits = type(app.limits)(max_payload_bytes=1000)
    refused: list[str] = []

    @app.task(name="bad_state", pass_context=True)
    async def bad_state(ctx: JobContext) -> None:  # async: the call blocks its loop briefly
        ctx.checkpoint({"ok": 1})
        for state in (float("nan"), {1, 2}, "x" * 2000, "a\x00b", ["\ud800"]):
            try:
                ctx.checkpoint(state)
            except InvalidJobError as exc:
                refused.append(str(exc))

    job_id = bad_state.defer()
    with running(app):
        wait_state(conn, schema, job_id, "succeeded")
    assert len(refused) == 5 and all(r.startswith("checkpoint") for r in refused), refused
    assert "more than the limit of 1000" in refused[2]
    assert job(conn, schema, job_id)["checkpoint"] == {"ok": 1}


def test_a_checkpoint_after_the_lease_was_lost_raises_lease_lost(
    app: App, conn: Conn, schema: str
) -> None:
    reclaimed = threading.Event()
    outcome: list[str] = []

    @app.task(name="late", pass_context=True)
    def late(ctx: JobContext) -> None:
        ctx.checkpoint({"step": 1})
        reclaimed.wait(30)
        try:
            ctx.checkpoint({"step": 2})
        except LeaseLost as exc:
            outcome.append(f"lost: {exc} {ctx.lease_lost.is_set()}")

    job_id = late.defer()
    with running(app, lease=30):
        wait_until(lambda: job(conn, schema, job_id)["checkpoint"] == {"step": 1}, what="step 1")
        # another worker's claim of the job (as after an expired lease)
        conn.execute(
            f'UPDATE "{schema}".jobs SET attempt = attempt + 1, worker_id = %s WHERE id = %s',
            ("other:1:x", job_id),
        )
        reclaimed.set()
        wait_until(lambda: outcome, what="the handler's second checkpoint")
    assert outcome[0].startswith(f"lost: job {job_id} attempt 1: lease lost")
    assert outcome[0].endswith("True")  # ctx.lease_lost is set too
    assert job(conn, schema, job_id)["checkpoint"] == {"step": 1}
