"""W1-W4 for Procrastinate (run inside benchmarks/.envs/procrastinate).

    python procrastinate_bench.py {W1,W2,W3,W4,version} JOBS DSN [--concurrency C]

Settings: PsycopgConnector (psycopg 3 async pool), W1 through ``Task.batch_defer_async``
(one statement for all jobs), W2 through ``defer_async`` one job per call (autocommit),
worker ``run_worker_async`` with LISTEN/NOTIFY on, ``wait=False`` for W3 so it exits
when the queue is empty, jobs kept (``delete_jobs`` never, the default). W3 is timed
from Procrastinate's own ``procrastinate_events``: first ``started`` to last
``succeeded``.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import procrastinate
import psycopg
from _common import (
    BenchError,
    Stamps,
    Worker,
    drain_timeout,
    driver_parser,
    emit,
    emit_versions,
    latency_figures,
    log,
    run_driver,
    stamps_path,
    wait_until,
)

DSN = sys.argv[3] if len(sys.argv) > 3 else os.environ.get("BENCH_DSN", "")
STAMPS = os.environ.get("BENCH_STAMPS", "")
QUEUE = "bench"

app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=DSN))


@app.task(name="noop", queue=QUEUE)
async def noop(i: int = 0) -> None:
    """Does nothing."""


@app.task(name="stamp", queue=QUEUE)
async def stamp(i: int = 0) -> None:
    Stamps.record(STAMPS, i)


def prepare(dsn: str) -> None:
    """Install the schema once per database, then empty it."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        installed = conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL").fetchone()[
            0
        ]
    if not installed:

        async def install() -> None:
            async with app.open_async():
                await app.schema_manager.apply_schema_async()

        asyncio.run(install())
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "TRUNCATE procrastinate_events, procrastinate_periodic_defers, procrastinate_jobs,"
            " procrastinate_workers CASCADE"
        )
        conn.execute("VACUUM ANALYZE procrastinate_jobs")


def worker_cmd(concurrency: int, wait: bool) -> list[str]:
    return [
        sys.executable,
        os.path.abspath(__file__),
        "worker",
        "0",
        DSN,
        "--concurrency",
        str(concurrency),
    ] + ([] if wait else ["--no-wait"])


def unfinished(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(
            "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"
        ).fetchone()[0]


async def w1(jobs: int) -> dict:
    kwargs = [{"i": n} for n in range(jobs)]
    async with app.open_async():
        t0 = time.perf_counter()
        await noop.batch_defer_async(*kwargs)
        return {"jobs_per_s": jobs / (time.perf_counter() - t0)}


async def w2(jobs: int) -> dict:
    async with app.open_async():
        await noop.defer_async(i=-1)  # warm the pool
        t0 = time.perf_counter()
        for n in range(jobs):
            await noop.defer_async(i=n)
        return {"jobs_per_s": jobs / (time.perf_counter() - t0)}


def w3(jobs: int, dsn: str, concurrency: int) -> dict:
    asyncio.run(noop_enqueue(jobs))
    left = {"n": jobs}
    with Worker(worker_cmd(concurrency, wait=False)) as w:

        def done() -> bool:
            w.check()
            left["n"] = unfinished(dsn)
            return not w.alive() or left["n"] == 0

        wait_until(done, drain_timeout(jobs), "drain", every=0.1, progress=lambda: left["n"])
    with psycopg.connect(dsn, autocommit=True) as conn:
        secs, ok = conn.execute(
            "SELECT EXTRACT(EPOCH FROM max(at) FILTER (WHERE type = 'succeeded')"
            " - min(at) FILTER (WHERE type = 'started')),"
            " count(*) FILTER (WHERE type = 'succeeded') FROM procrastinate_events"
        ).fetchone()
    if ok != jobs:
        raise BenchError(f"{ok} of {jobs} jobs succeeded")
    return {"jobs_per_s": jobs / float(secs)}


async def noop_enqueue(jobs: int) -> None:
    async with app.open_async():
        await noop.batch_defer_async(*({"i": n} for n in range(jobs)))


def w4(jobs: int, concurrency: int, gap: float = 0.02) -> dict:
    global STAMPS
    STAMPS = stamps_path("procrastinate")
    stamps = Stamps(STAMPS)
    sent: dict[int, float] = {}
    with Worker(worker_cmd(concurrency, wait=True), env={"BENCH_STAMPS": STAMPS}) as w:

        async def produce() -> None:
            async with app.open_async():
                await stamp.defer_async(i=-1)  # warm-up: proves the worker listens
                await asyncio.to_thread(
                    wait_until,
                    lambda: w.check() or -1 in stamps.read(),
                    60,
                    "worker start",
                )
                await asyncio.sleep(0.2)
                for n in range(jobs):
                    await stamp.defer_async(i=n)
                    sent[n] = time.time()
                    await asyncio.sleep(gap)
                await asyncio.to_thread(
                    wait_until,
                    lambda: len(stamps.read()) >= jobs + 1,
                    60,
                    "all latency jobs run",
                )

        asyncio.run(produce())
    figures = latency_figures(sent, stamps.read(), jobs)
    os.unlink(STAMPS)
    return figures


def run_worker(concurrency: int, wait: bool) -> None:
    async def main() -> None:
        async with app.open_async():
            await app.run_worker_async(
                queues=[QUEUE], concurrency=concurrency, wait=wait, listen_notify=True
            )

    asyncio.run(main())


def main() -> None:
    p = driver_parser()
    p.add_argument("--concurrency", type=int, default=10)
    p.add_argument("--no-wait", action="store_true")
    a = p.parse_args()
    if a.workload == "version":
        emit_versions(version="procrastinate", psycopg="psycopg")
        return
    if a.workload == "worker":
        run_worker(a.concurrency, wait=not a.no_wait)
        return
    prepare(a.dsn)
    if a.workload == "W1":
        emit(asyncio.run(w1(a.jobs)))
    elif a.workload == "W2":
        emit(asyncio.run(w2(a.jobs)))
    elif a.workload == "W3":
        emit(w3(a.jobs, a.dsn, a.concurrency))
    elif a.workload == "W4":
        emit(w4(a.jobs, a.concurrency))
    else:
        raise SystemExit(f"unknown workload {a.workload}")
    log(f"procrastinate {a.workload} done")


if __name__ == "__main__":
    run_driver(main)
