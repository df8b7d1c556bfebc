"""Dependencies (``after=``) against a real PostgreSQL: "evaluate x N, then summarize" on
several worker processes, cancellation down the chain, dependencies that already finished,
unknown ids, the maintenance sweep, and the 'waiting' state in admin and the CLI."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import create_engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from pgqueue import App, InvalidJobError, JobCancelled, JobFailed, JobSpec
from pgqueue.maintenance import DependencySweep
from tests.helpers import arun
from tests.integration.test_cli import run_cli
from tests.worker.inproc import running
from tests.worker.procs import Workers, effects, job

Conn = psycopg.Connection[Any]
FAST = ("--lease", "2", "--poll-interval", "0.5")


def count_jobs(conn: Conn, schema: str) -> int:
    row = conn.execute(f'SELECT count(*) FROM "{schema}".all_jobs').fetchone()
    assert row is not None
    return int(row[0])


def fake(conn: Conn, schema: str, state: str, depends_on: list[int] | None = None) -> int:
    """A job row written directly, in any state (no worker involved)."""
    row = conn.execute(
        f'INSERT INTO "{schema}".jobs (queue, task, state, depends_on, finished_at) '
        "VALUES ('default', 'record', %s, %s, "
        "CASE WHEN %s IN ('succeeded', 'failed', 'cancelled') THEN now() END) RETURNING id",
        (state, depends_on, state),
    ).fetchone()
    assert row is not None
    return int(row[0])


# -- with worker processes ----------------------------------------------------------------------


def test_evaluate_then_summarize_on_two_processes(
    qapp: App, conn: Conn, schema: str, workers: Workers
) -> None:
    evaluations = [qapp.enqueue("evaluate", [n, 0.3]) for n in range(1, 9)]
    summary = qapp.enqueue("summarize", [evaluations], after=evaluations)
    assert summary.state() == "waiting"
    assert job(conn, schema, summary)["depends_on"] == evaluations
    a = workers.start("--concurrency", "4", *FAST, name="a")
    b = workers.start("--concurrency", "4", *FAST, name="b")
    workers.wait_registered(conn, a, b)

    # the summary read every evaluation's result through app.job(id).result()
    assert summary.result(timeout=30) == {"total": 360, "count": 8}
    parents = [job(conn, schema, i) for i in evaluations]
    assert all(p["state"] == "succeeded" for p in parents)
    row = job(conn, schema, summary)
    assert row["started_at"] >= max(p["finished_at"] for p in parents)
    assert row["attempt"] == 1 and row["errors"] == []
    assert len(effects(conn, schema, summary)) == 1
    # both processes evaluated (the last two parents can finish at the same moment in two
    # workers: the later one's resolve still sees the summary ready)
    assert {p["result"]["pid"] for p in parents} == {a.pid, b.pid}
    assert [e.result() for e in evaluations] == [p["result"] for p in parents]


def test_a_failed_dependency_cancels_the_chain_and_nothing_of_it_runs(
    qapp: App, conn: Conn, schema: str, workers: Workers
) -> None:
    bad = qapp.enqueue("always_raises", max_attempts=1)
    good = qapp.enqueue("evaluate", [1])
    child = qapp.enqueue("record", after=[good, bad])
    grandchild = qapp.enqueue("record", after=[child])
    great = qapp.enqueue("summarize", [[grandchild]], after=[grandchild, good])
    sibling = qapp.enqueue("summarize", [[good]], after=[good])
    w = workers.start("--concurrency", "4", *FAST, name="w")
    workers.wait_registered(conn, w)

    with pytest.raises(JobFailed, match="always_raises: attempt 1") as failed:
        bad.result(timeout=20)
    assert not isinstance(failed.value, JobCancelled)
    for dependent in (child, grandchild, great):
        with pytest.raises(JobCancelled) as cancelled:
            dependent.result(timeout=20)
        assert cancelled.value.kind == "dependency"
        assert "a job it depends on failed or was cancelled" in str(cancelled.value)
        row = job(conn, schema, dependent)
        assert (row["state"], row["attempt"], row["started_at"]) == ("cancelled", 0, None)
        assert row["finished_at"] is not None
        assert effects(conn, schema, dependent) == []
    assert sibling.result(timeout=20) == {"total": 10, "count": 1}


def test_a_job_the_reaper_fails_cancels_its_dependents_at_once(
    qapp: App, conn: Conn, schema: str, workers: Workers
) -> None:
    doomed = qapp.enqueue("kill_self", max_attempts=1)  # kills the worker that runs it
    child = qapp.enqueue("record", after=[doomed])
    a = workers.start("--concurrency", "1", *FAST, name="a")
    b = workers.start("--concurrency", "1", *FAST, name="b")
    workers.wait_registered(conn, a, b)
    with pytest.raises(JobFailed) as failed:
        doomed.result(timeout=30)  # told by the reaper's statement
    assert failed.value.kind == "lost"
    with pytest.raises(JobCancelled):
        child.result(timeout=10)
    parent_row, child_row = job(conn, schema, doomed), job(conn, schema, child)
    # resolved right after the reaper's commit, not by the sweep ten seconds later
    assert (child_row["finished_at"] - parent_row["finished_at"]).total_seconds() < 2.0
    assert effects(conn, schema, child) == []


def test_cancelling_a_waiting_job_cancels_its_dependents(
    qapp: App, conn: Conn, schema: str, workers: Workers
) -> None:
    slow = qapp.enqueue("slow", [30.0])
    middle = qapp.enqueue("record", after=[slow])
    last = qapp.enqueue("record", after=[middle])
    assert qapp.admin.cancel([middle]) == {middle: "cancelled"}
    with pytest.raises(JobCancelled):
        last.result(timeout=5)
    assert job(conn, schema, last)["errors"][-1]["kind"] == "dependency"
    assert slow.state() == "queued"  # what it waited for is not touched


# -- in this process ----------------------------------------------------------------------------


def test_after_jobs_that_already_finished(app: App, conn: Conn, schema: str) -> None:
    @app.task(name="step")
    def step(n: int) -> int:
        return n

    done, failed, cancelled = (fake(conn, schema, s) for s in ("succeeded", "failed", "cancelled"))
    ready = step.options(after=[done]).defer(1)
    assert ready.state() == "queued"
    doomed = [app.enqueue(step, [2], after=[done, failed]), step.options(after=cancelled).defer(3)]
    for d in doomed:
        row = job(conn, schema, d)
        assert row["state"] == "cancelled"
        assert row["finished_at"] is not None
        assert [e["kind"] for e in row["errors"]] == ["dependency"]
        with pytest.raises(JobCancelled, match="had already failed or been cancelled"):
            d.result(timeout=0)
    # enqueue_many and the async API take after= too; a JobSpec carries it
    specs = [JobSpec("step", (4,), after=[done]), JobSpec("step", (5,)), step.spec(6)]
    many = app.enqueue_many(specs)
    assert [m.state() for m in many] == ["queued", "queued", "queued"]
    later = arun(app, app.enqueue_async(step, [7], after=[ready]))
    assert later.state() == "waiting"
    with running(app):
        assert [j.result(timeout=10) for j in (ready, *many, later)] == [1, 4, 5, 6, 7]


def test_unknown_dependency_is_refused_and_nothing_is_written(
    app: App, conn: Conn, schema: str, pg_dsn: str
) -> None:
    @app.task(name="step")
    def step() -> None:
        pass

    real = step.defer()
    before = count_jobs(conn, schema)
    message = "after= names job 999999, which does not exist"
    with pytest.raises(InvalidJobError, match=message):
        step.options(after=[real, 999_999]).defer()
    with pytest.raises(InvalidJobError, match=message):
        app.enqueue_many([step.spec(), JobSpec("step", after=[999_999, real])])
    with pytest.raises(InvalidJobError, match=message):
        arun(app, app.enqueue_async(step, after=[999_999]))
    assert count_jobs(conn, schema) == before
    # In the caller's transaction: refused before the INSERT, so the transaction goes on.
    with psycopg.connect(pg_dsn) as own:
        own.execute(f'INSERT INTO "{schema}".queues (name) VALUES (%s)', ("kept",))
        with pytest.raises(InvalidJobError, match=message):
            step.options(connection=own, after=[999_999]).defer()
        inside = step.options(connection=own, after=[real]).defer()
        own.commit()
    assert job(conn, schema, inside)["state"] == "waiting"
    assert conn.execute(f'SELECT name FROM "{schema}".queues').fetchall() == [("kept",)]
    for bad, says in [
        ("x", "after must be a list of job ids"),
        ([0], "positive whole numbers"),
        ([True], "positive whole numbers"),
        ([1.0], "positive whole numbers"),
        ({"a": 1}, "after must be a list of job ids"),
    ]:
        with pytest.raises(InvalidJobError, match=says):
            app.enqueue(step, after=bad)  # type: ignore[arg-type]
    assert count_jobs(conn, schema) == before + 1


def test_after_in_sqlalchemy_and_async_transactions(
    app: App, conn: Conn, schema: str, pg_dsn: str
) -> None:
    @app.task(name="step")
    def step() -> None:
        pass

    parent = step.defer()
    engine = create_engine(
        "postgresql+psycopg://", creator=lambda: psycopg.connect(pg_dsn), poolclass=NullPool
    )
    try:
        with Session(engine) as session, session.begin():
            with pytest.raises(InvalidJobError, match="names job 999999"):
                app.enqueue(step, connection=session, after=[999_999])
            kept = app.enqueue(step, connection=session, after=[parent])
            many = app.enqueue_many([JobSpec("step", after=[kept])], connection=session)
            assert count_jobs(conn, schema) == 1  # not committed yet
    finally:
        engine.dispose()
    assert [job(conn, schema, i)["state"] for i in (kept, *many)] == ["waiting", "waiting"]

    async def in_transaction() -> int:
        async with await psycopg.AsyncConnection.connect(pg_dsn) as aconn:
            with pytest.raises(InvalidJobError, match="names job 999999"):
                await app.enqueue_async(step, connection=aconn, after=[999_999])
            inside = await app.enqueue_async(step, connection=aconn, after=[parent])
            await aconn.commit()
        return inside

    inside = arun(app, in_transaction())
    assert job(conn, schema, inside)["depends_on"] == [parent]


def test_a_waiting_job_holds_its_dedupe_key(app: App, conn: Conn, schema: str) -> None:
    @app.task(name="step")
    def step() -> None:
        pass

    parent = step.defer()
    first = app.enqueue(step, after=[parent], dedupe_key="report-7")
    second = app.enqueue(step, after=[parent], dedupe_key="report-7")
    third = app.enqueue(step, dedupe_key="report-7")
    assert first == second == third and first.state() == "waiting"
    assert count_jobs(conn, schema) == 2


def test_sweep_repairs_waiting_jobs_a_crash_left_behind(
    app: App, conn: Conn, schema: str, pg_dsn: str
) -> None:
    # What a worker that died between its commit and its resolve call leaves: waiting jobs
    # whose dependencies have finished.
    ok1, ok2 = fake(conn, schema, "succeeded"), fake(conn, schema, "succeeded")
    bad, running_parent = fake(conn, schema, "failed"), fake(conn, schema, "running")
    ready = fake(conn, schema, "waiting", [ok1, ok2])
    doomed = fake(conn, schema, "waiting", [ok1, bad])
    below = fake(conn, schema, "waiting", [doomed])
    still = fake(conn, schema, "waiting", [ok1, running_parent])
    pruned = fake(conn, schema, "waiting", [ok2, 10**9])  # a dependency pruned meanwhile

    async def sweep() -> int:
        async with AsyncConnectionPool(
            pg_dsn, min_size=1, max_size=2, kwargs={"autocommit": True}
        ) as pool:
            service = DependencySweep(pool, schema, limit=2)  # two passes of two
            return await service.run_once()

    assert asyncio.run(sweep()) == 4
    states = {i: job(conn, schema, i)["state"] for i in (ready, doomed, below, still, pruned)}
    assert states == {
        ready: "queued",
        doomed: "cancelled",
        below: "cancelled",
        still: "waiting",
        pruned: "queued",
    }
    assert asyncio.run(sweep()) == 0  # nothing more to do


def test_the_worker_runs_the_sweep(app: App, conn: Conn, schema: str) -> None:
    @app.task(name="record")
    def record() -> str:
        return "ran"

    parent = fake(conn, schema, "succeeded")
    child = fake(conn, schema, "waiting", [parent])
    # the sweep runs every 10 maintenance intervals: 1 s here
    with running(app, maintenance_interval=0.1):
        assert app.job(child).result(timeout=15) == "ran"


# -- seeing it -------------------------------------------------------------------------------


def test_waiting_jobs_in_admin_status_and_cli(
    app: App, conn: Conn, schema: str, pg_dsn: str
) -> None:
    @app.task(name="step", queue="evals")
    def step() -> None:
        pass

    parents = [step.defer(), step.defer()]
    child = step.options(after=parents).defer()
    assert [j["id"] for j in app.admin.jobs(state="waiting")] == [child]
    (stats,) = app.admin.queues()
    assert (stats["queue"], stats["queued"], stats["waiting"]) == ("evals", 2, 1)
    assert app.admin.job(child)["depends_on"] == parents

    def cli(*args: str) -> str:
        code, out, err = run_cli("--dsn", pg_dsn, "--schema", schema, *args)
        assert (code, err) == (0, ""), err
        return out

    listed = json.loads(cli("jobs", "list", "--state", "waiting", "--json"))
    assert [(j["id"], j["state"]) for j in listed] == [(child, "waiting")]
    shown = cli("jobs", "show", str(child))
    assert f"runs after        {parents[0]}, {parents[1]}" in shown
    assert "state             waiting" in shown
    lines = cli("status").splitlines()
    assert lines[0].split()[:5] == ["QUEUE", "QUEUED", "SCHED", "WAIT", "RUNNING"]
    assert lines[1].split()[:5] == ["evals", "2", "0", "1", "0"]
    assert all(len(line) <= 80 for line in lines)
    out = cli("enqueue", "step", "--after", str(parents[0]), "--after", str(child), "--json")
    grandchild = json.loads(out)["id"]
    assert job(conn, schema, grandchild)["depends_on"] == [parents[0], child]
    code, out, err = run_cli(
        "--dsn", pg_dsn, "--schema", schema, "enqueue", "step", "--after", "424242"
    )
    assert code == 1 and out == ""
    assert err.strip().splitlines() == [
        "Error: after= names job 424242, which does not exist (never enqueued, or pruned "
        "after it finished); nothing was written"
    ]
