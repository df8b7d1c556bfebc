"""W1-W4 for PgQueuer (run inside benchmarks/.envs/pgqueuer).

    python pgqueuer_bench.py {W1,W2,W3,W4,version} JOBS DSN [--dequeuers D] [--batch B]

Settings: asyncpg driver and uvloop (what PgQueuer's own tools/benchmark.py uses),
durable tables (the default), W1 through one ``Queries.enqueue`` call with lists, W2
through ``Queries.enqueue`` with scalars one job per call (autocommit), worker: one
process running ``--dequeuers`` PgQueuer instances (each its own connection, like
PgQueuer's benchmark ``--dequeue``) with ``batch_size=--batch``; ``mode=drain`` for W3.
W3 is timed from PgQueuer's own ``pgqueuer_log``: first ``picked`` to last
``successful``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from datetime import timedelta

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import asyncpg
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
from pgqueuer import PgQueuer
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Job
from pgqueuer.queries import Queries

try:
    import uvloop

    run = uvloop.run
except ImportError:  # pragma: no cover
    run = asyncio.run


async def queries(dsn: str) -> Queries:
    return Queries(AsyncpgDriver(await asyncpg.connect(dsn=dsn)))


async def prepare(dsn: str) -> None:
    conn = await asyncpg.connect(dsn=dsn)
    try:
        q = Queries(AsyncpgDriver(conn))
        if not await q.schema_is_installed():
            await q.install()
        tables = [
            r[0]
            for r in await conn.fetch(
                "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = current_schema()"
                " AND tablename LIKE 'pgqueuer%'"
            )
        ]
        await conn.execute(f"TRUNCATE {', '.join(tables)}")
        await conn.execute("VACUUM ANALYZE pgqueuer")
    finally:
        await conn.close()


def payload(n: int) -> bytes:
    return json.dumps({"i": n}).encode()


async def w1(dsn: str, jobs: int) -> dict:
    q = await queries(dsn)
    entry, pay, prio = ["noop"] * jobs, [payload(n) for n in range(jobs)], [0] * jobs
    t0 = time.perf_counter()
    await q.enqueue(entry, pay, prio)
    return {"jobs_per_s": jobs / (time.perf_counter() - t0)}


async def w2(dsn: str, jobs: int) -> dict:
    q = await queries(dsn)
    await q.enqueue("noop", payload(-1))
    t0 = time.perf_counter()
    for n in range(jobs):
        await q.enqueue("noop", payload(n))
    return {"jobs_per_s": jobs / (time.perf_counter() - t0)}


def worker_cmd(dsn: str, args: argparse.Namespace, drain: bool) -> list[str]:
    return [
        sys.executable,
        os.path.abspath(__file__),
        "worker",
        "0",
        dsn,
        "--dequeuers",
        str(args.dequeuers),
        "--batch",
        str(args.batch),
    ] + (["--drain"] if drain else [])


async def count_log(dsn: str) -> tuple[float | None, int]:
    conn = await asyncpg.connect(dsn=dsn)
    try:
        row = await conn.fetchrow(
            "SELECT EXTRACT(EPOCH FROM max(created) FILTER (WHERE status = 'successful')"
            " - min(created) FILTER (WHERE status = 'picked')),"
            " count(*) FILTER (WHERE status = 'successful') FROM pgqueuer_log"
        )
        return (float(row[0]) if row[0] is not None else None), int(row[1])
    finally:
        await conn.close()


def w3(dsn: str, jobs: int, args: argparse.Namespace) -> dict:
    async def fill() -> None:
        q = await queries(dsn)
        await q.enqueue(["noop"] * jobs, [payload(n) for n in range(jobs)], [0] * jobs)

    run(fill())
    with Worker(worker_cmd(dsn, args, drain=True)) as w:
        seen = {"n": 0}

        def done() -> bool:
            w.check()
            seen["n"] = run(count_log(dsn))[1]
            return not w.alive() or seen["n"] >= jobs

        wait_until(done, drain_timeout(jobs), "drain", every=0.1, progress=lambda: seen["n"])
        w.stop()
    secs, ok = run(count_log(dsn))
    if ok != jobs or not secs:
        raise BenchError(f"{ok} of {jobs} jobs succeeded")
    return {"jobs_per_s": jobs / secs}


def w4(dsn: str, jobs: int, args: argparse.Namespace, gap: float = 0.02) -> dict:
    path = stamps_path("pgqueuer")
    stamps = Stamps(path)
    sent: dict[int, float] = {}
    with Worker(worker_cmd(dsn, args, drain=False), env={"BENCH_STAMPS": path}) as w:

        async def produce() -> None:
            q = await queries(dsn)
            await q.enqueue("stamp", payload(-1))
            await asyncio.to_thread(
                wait_until, lambda: w.check() or -1 in stamps.read(), 60, "worker start"
            )
            await asyncio.sleep(0.2)
            for n in range(jobs):
                await q.enqueue("stamp", payload(n))
                sent[n] = time.time()
                await asyncio.sleep(gap)
            await asyncio.to_thread(
                wait_until,
                lambda: len(stamps.read()) >= jobs + 1,
                60,
                "all latency jobs run",
            )

        run(produce())
    figures = latency_figures(sent, stamps.read(), jobs)
    os.unlink(path)
    return figures


def run_worker(dsn: str, dequeuers: int, batch: int, drain: bool) -> None:
    from pgqueuer import types

    stamps = os.environ.get("BENCH_STAMPS", "")
    mode = types.QueueExecutionMode.drain if drain else types.QueueExecutionMode.continuous

    async def main() -> None:
        pgqs = []
        for _ in range(dequeuers):
            pgq = PgQueuer.from_asyncpg_connection(await asyncpg.connect(dsn=dsn))

            @pgq.entrypoint("noop")
            async def noop(job: Job) -> None:
                pass

            @pgq.entrypoint("stamp")
            async def stamp(job: Job) -> None:
                Stamps.record(stamps, json.loads(job.payload or b"{}")["i"])

            pgqs.append(pgq)
        await asyncio.gather(
            *(
                p.run(batch_size=batch, mode=mode, dequeue_timeout=timedelta(seconds=30))
                for p in pgqs
            )
        )

    run(main())


def main() -> None:
    p = driver_parser()
    p.add_argument("--dequeuers", type=int, default=5)
    p.add_argument("--batch", type=int, default=10)
    p.add_argument("--drain", action="store_true")
    a = p.parse_args()
    if a.workload == "version":
        emit_versions(version="pgqueuer", asyncpg="asyncpg")
        return
    if a.workload == "worker":
        run_worker(a.dsn, a.dequeuers, a.batch, a.drain)
        return
    run(prepare(a.dsn))
    if a.workload == "W1":
        emit(run(w1(a.dsn, a.jobs)))
    elif a.workload == "W2":
        emit(run(w2(a.dsn, a.jobs)))
    elif a.workload == "W3":
        emit(w3(a.dsn, a.jobs, a))
    elif a.workload == "W4":
        emit(w4(a.dsn, a.jobs, a))
    else:
        raise SystemExit(f"unknown workload {a.workload}")
    log(f"pgqueuer {a.workload} done")


if __name__ == "__main__":
    run_driver(main)
