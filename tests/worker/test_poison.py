"""One bad job hurts nothing else: a job whose args/kwargs cannot be decoded, claimed in
one batch between normal jobs, fails alone at its first attempt (kind ``undecodable``);
the worker keeps running (same process) and the other jobs of the batch succeed. In this
process and with real ``pgqueue work`` processes."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from pgqueue import App
from tests.helpers import wait_until
from tests.worker.inproc import running
from tests.worker.poison import DEEP, HUGE_INT, enqueue_sql, insert_raw, update_raw
from tests.worker.procs import Workers, job, wait_state

Conn = psycopg.Connection[Any]


def poison_rows(conn: Conn, schema: str, task: str) -> dict[int, str]:
    """Poison jobs of ``task`` put in every way, each with the words its message must have."""
    deep = enqueue_sql(conn, schema, task, DEEP)  # the schema's enqueue()
    deep_kwargs = enqueue_sql(conn, schema, task, '{"a": ' + DEEP + "}")
    obj_args = insert_raw(conn, schema, task, args='{"x": 1}')  # args an object
    huge = insert_raw(conn, schema, task, args=HUGE_INT)  # Python's int() refuses it
    arr_kwargs = insert_raw(conn, schema, task)  # a raw UPDATE: kwargs an array
    update_raw(conn, schema, arr_kwargs, "kwargs", "[1, 2]")
    return {
        deep: "args are nested too deeply",
        deep_kwargs: "kwargs are nested too deeply",
        obj_args: "args are of the wrong JSON type",
        huge: "args are not decodable",
        arr_kwargs: "kwargs are of the wrong JSON type",
    }


def outcome(conn: Conn, schema: str, job_id: int) -> dict[str, Any]:
    """The job's state and counters, without its args (psycopg could not decode those)."""
    cur = conn.execute(
        "SELECT state, attempt, error_count, lost_count, max_attempts, errors, started_at "
        f'FROM "{schema}".all_jobs WHERE id = %s',
        (job_id,),
    )
    row = cur.fetchone()
    assert row is not None and cur.description is not None
    return dict(zip([c.name for c in cur.description], row, strict=True))


def check(conn: Conn, schema: str, poison: dict[int, str], normal: list[int]) -> None:
    for job_id, words in poison.items():
        row = wait_until(
            lambda: (r := outcome(conn, schema, job_id))["state"] == "failed" and r,  # noqa: B023
            what=f"poison job {job_id} failed",
        )
        assert (row["attempt"], row["error_count"], row["lost_count"]) == (1, 1, 0)
        assert row["max_attempts"] > 1  # failed at once, whatever max_attempts
        (err,) = row["errors"]
        assert err["kind"] == "undecodable", err
        assert words in err["message"], err["message"]
        assert err["attempt"] == 1
    for job_id in normal:
        row = wait_state(conn, schema, job_id, "succeeded")
        assert (row["attempt"], row["error_count"]) == (1, 0)
    # one claim statement took them all (its now() is every job's started_at)
    starts = {outcome(conn, schema, i)["started_at"] for i in [*poison, *normal]}
    assert len(starts) == 1, starts


def test_poison_jobs_in_a_claim_batch_fail_alone_in_process(
    app: App, conn: Conn, schema: str
) -> None:
    @app.task(name="echo")
    def echo(*args: Any, **kwargs: Any) -> int:
        return len(args) + len(kwargs)

    normal = [app.enqueue("echo", [i]) for i in range(3)]
    poison = poison_rows(conn, schema, "echo")
    normal += [app.enqueue("echo", [i], {"k": i}) for i in range(3)]
    with running(app, concurrency=20) as worker:
        check(conn, schema, poison, normal)
        # the worker is alive and still works
        later = app.enqueue("echo", [1])
        wait_state(conn, schema, later, "succeeded")
        assert worker.heartbeat.is_alive() and not worker._stopping
        assert worker.claimed == len(normal) + 1  # poison rows are not handed to handlers


def test_poison_jobs_of_a_group_fail_alone_in_the_flow_claim(
    app: App, conn: Conn, schema: str
) -> None:
    """Grouped jobs are claimed by job_claim_flow, decoded the same way."""

    @app.task(name="echo")
    def echo(*args: Any, **kwargs: Any) -> int:
        return len(args) + len(kwargs)

    normal = [app.enqueue("echo", [i], group_key="tenant") for i in range(3)]
    poison = {
        insert_raw(conn, schema, "echo", args=DEEP, group_key="tenant"): "args are nested",
        insert_raw(conn, schema, "echo", kwargs="[]", group_key="tenant"): "kwargs are of the",
    }
    normal += [app.enqueue("echo", [i], group_key="tenant") for i in range(3)]
    with running(app, concurrency=20) as worker:
        check(conn, schema, poison, normal)
        assert worker.heartbeat.is_alive() and not worker._stopping


@pytest.mark.parametrize("batch", ["one batch", "prefetch"])
def test_poison_jobs_fail_alone_in_a_real_worker_process(
    qapp: App, conn: Conn, schema: str, workers: Workers, batch: str
) -> None:
    normal = [qapp.enqueue("record", [i]) for i in range(3)]
    poison = poison_rows(conn, schema, "record")
    normal += [qapp.enqueue("record", [i]) for i in range(3)]
    extra = ("--prefetch", "20") if batch == "prefetch" else ()
    w = workers.start("--concurrency", "20", "--lease", "5", "--poll-interval", "0.5", *extra)
    check(conn, schema, poison, normal)
    later = qapp.enqueue("record", [99])
    row = wait_state(conn, schema, later, "succeeded")
    assert w.proc.poll() is None, "the worker process is still running"
    assert row["result"]["pid"] == w.pid  # the same process ran it
    assert w.pid in workers.registered(conn)
    for job_id in normal:
        assert job(conn, schema, job_id)["result"]["pid"] == w.pid
    w.wait_log("args are nested too deeply")


def test_a_poison_job_can_be_looked_at(app: App, conn: Conn, schema: str) -> None:
    """``pgqueue jobs show`` (``app.admin.job``) gives args Python cannot decode as their
    JSON text instead of a RecursionError."""
    deep = enqueue_sql(conn, schema, "echo", DEEP)
    huge = insert_raw(conn, schema, "echo", args=HUGE_INT)
    assert app.admin.job(deep)["args"] == "[" * 10_000 + "]" * 10_000
    row = app.admin.job(huge)
    assert row["args"] == HUGE_INT and row["kwargs"] == {} and row["state"] == "queued"
