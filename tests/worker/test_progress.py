"""ctx.progress(): kept in memory, written (fenced) with the next heartbeat, and shown in
the running_jobs view, app.admin, ``pgqueue jobs list`` and ``pgqueue jobs show``."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import psycopg

from pgqueue import App, InvalidJobError, JobContext
from tests.helpers import wait_until
from tests.integration.test_cli import run_cli
from tests.worker.inproc import running
from tests.worker.procs import wait_state

Conn = psycopg.Connection[Any]
LEASE = 1.5  # a beat every 0.5 s


def view(conn: Conn, schema: str, job_id: int) -> dict[str, Any] | None:
    cur = conn.execute(f'SELECT * FROM "{schema}".running_jobs WHERE id = %s', (job_id,))
    row = cur.fetchone()
    assert cur.description is not None
    return None if row is None else dict(zip([c.name for c in cur.description], row, strict=True))


def test_progress_reaches_the_view_admin_and_the_cli(
    app: App, conn: Conn, schema: str, pg_dsn: str
) -> None:
    release = threading.Event()
    refused: list[str] = []

    @app.task(name="evaluate", pass_context=True)
    def evaluate(ctx: JobContext) -> str:
        for bad in ((-1,), ("3",), (1, float("inf")), (1, None, 42)):
            try:
                ctx.progress(*bad)  # type: ignore[arg-type]
            except InvalidJobError as exc:
                refused.append(str(exc))
        ctx.progress(1, 10)
        ctx.progress(3, 10, "step 3: scoring")  # the last value wins
        release.wait(30)
        return "done"

    job_id = evaluate.defer()
    with running(app, lease=LEASE):
        row = wait_until(
            lambda: (v := view(conn, schema, job_id)) and v["progress_done"] == 3 and v,
            what="progress in running_jobs",
        )
        assert (row["progress_total"], float(row["progress_percent"])) == (10, 30.0)
        assert row["progress_message"] == "step 3: scoring" and row["progress_at"] is not None

        (running_row,) = app.admin.running()
        assert (running_row["id"], running_row["progress_message"]) == (job_id, "step 3: scoring")
        shown = app.admin.job(job_id)["progress"]
        assert (shown["done"], shown["total"], shown["message"]) == (3, 10, "step 3: scoring")
        assert app.admin.jobs(state="running")[0]["progress"]["done"] == 3

        base = ("--dsn", pg_dsn, "--schema", schema, "jobs")
        code, out, _ = run_cli(*base, "list")
        assert code == 0 and "running 30%" in out, out
        code, out, _ = run_cli(*base, "show", str(job_id))
        assert code == 0 and "3/10 (30%)  step 3: scoring" in out, out
        code, out, _ = run_cli(*base, "show", str(job_id), "--json")
        assert code == 0 and json.loads(out)["progress"]["message"] == "step 3: scoring"
        release.set()
        done = wait_state(conn, schema, job_id, "succeeded")
    assert done["result"] == "done"
    assert len(refused) == 4 and all(r.startswith("progress: ") for r in refused), refused
    assert app.admin.job(job_id)["progress"]["done"] == 3  # the last report stays


def test_progress_of_a_job_whose_lease_is_lost_is_not_written(
    app: App, conn: Conn, schema: str
) -> None:
    """Progress rides on the fenced renewal: a report for an attempt that is no longer the
    job's own changes nothing."""
    release = threading.Event()
    contexts: list[JobContext] = []

    @app.task(name="hold", pass_context=True)
    def hold(ctx: JobContext) -> None:
        contexts.append(ctx)
        release.wait(30)

    job_id = hold.defer()
    with running(app, lease=LEASE) as worker:
        wait_until(lambda: contexts, what="the handler started")
        # a stale attempt's report, straight to the heartbeat (as a lost run would make it)
        worker.heartbeat.progress(job_id, contexts[0].attempt + 1, {"done": 99})
        contexts[0].progress(5)
        wait_until(
            lambda: (v := view(conn, schema, job_id)) and v["progress_done"] == 5,
            what="the real attempt's progress",
        )
        release.set()
        wait_state(conn, schema, job_id, "succeeded")
    assert app.admin.job(job_id)["progress"]["done"] == 5


def test_progress_from_an_async_handler_with_the_thread_heartbeat(
    app: App, conn: Conn, schema: str
) -> None:
    release = threading.Event()

    @app.task(name="step", pass_context=True)
    async def step(ctx: JobContext) -> None:
        ctx.progress(2, 4)
        while not release.is_set():
            await asyncio.sleep(0.02)

    job_id = step.defer()
    with running(app, lease=LEASE, heartbeat="thread"):
        wait_until(
            lambda: (v := view(conn, schema, job_id)) and v["progress_percent"] == 50,
            what="progress from an async handler, thread heartbeat",
        )
        release.set()
        wait_state(conn, schema, job_id, "succeeded")
