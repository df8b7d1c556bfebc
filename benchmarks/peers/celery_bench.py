"""W1-W4 for Celery with the Redis broker (run inside benchmarks/.envs/celery).

    python celery_bench.py {W1,W2,W3,W4,version} JOBS REDIS_URL
        [--pool prefork] [--concurrency 2] [--prefetch 128] [--bulk loop|group]

Jobs live in Redis (the broker), not in PostgreSQL: Celery has no PostgreSQL broker
of its own. Settings from Celery's "Optimizing" guide for many short tasks: results
ignored (no result backend), ``worker_prefetch_multiplier`` 128, rate limits off,
``--without-gossip --without-mingle --without-heartbeat``, early acknowledgement (the
default: a worker crash loses the jobs it holds). W1 publishes all jobs through one
producer connection (``apply_async(producer=...)`` in a loop; ``--bulk group`` sends a
``group`` instead), W2 calls ``apply_async`` once per job. One worker process with the
given pool. W3 is timed in the worker: the first handler start to the last
``task_postrun``, counted across the pool's children in shared memory.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
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
from celery import Celery, group
from celery.signals import task_postrun

BROKER = (
    sys.argv[3]
    if len(sys.argv) > 3
    else os.environ.get("BENCH_BROKER", "redis://127.0.0.1:6379/13")
)
STAMPS = os.environ.get("BENCH_STAMPS", "")
EXPECT = int(os.environ.get("BENCH_EXPECT", "0"))
QUEUE = "bench"

app = Celery("bench", broker=BROKER)
app.conf.update(
    task_ignore_result=True,
    task_default_queue=QUEUE,
    worker_prefetch_multiplier=128,
    worker_disable_rate_limits=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)

# Shared by the worker's pool children (created before the pool forks them).
_LOCK = multiprocessing.Lock()
_FIRST = multiprocessing.RawValue("d", 0.0)
_DONE = multiprocessing.RawValue("q", 0)


@app.task(name="noop")
def noop(i: int = 0) -> None:
    if _FIRST.value == 0.0:
        with _LOCK:
            if _FIRST.value == 0.0:
                _FIRST.value = time.time()


@app.task(name="stamp")
def stamp(i: int = 0) -> None:
    Stamps.record(STAMPS, i)


@task_postrun.connect
def _count(sender=None, **_: object) -> None:
    if EXPECT and getattr(sender, "name", None) == "noop":
        with _LOCK:
            _DONE.value += 1
            if _DONE.value == EXPECT:
                Stamps.record(STAMPS, -2)  # last job finished
                with open(STAMPS, "a") as f:
                    f.write(f"-3 {_FIRST.value!r}\n")  # first job started


def redis_client():
    import redis

    return redis.Redis.from_url(BROKER)


def prepare() -> None:
    redis_client().flushdb()


def worker_cmd(a: argparse.Namespace) -> list[str]:
    return [
        sys.executable,
        os.path.abspath(__file__),
        "worker",
        "0",
        BROKER,
        "--pool",
        a.pool,
        "--concurrency",
        str(a.concurrency),
        "--prefetch",
        str(a.prefetch),
    ]


def run_worker(a: argparse.Namespace) -> None:
    app.conf.worker_prefetch_multiplier = a.prefetch
    app.worker_main(
        [
            "worker",
            "-Q",
            QUEUE,
            "--pool",
            a.pool,
            "--concurrency",
            str(a.concurrency),
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel",
            "WARNING",
            "-n",
            f"bench{os.getpid()}@%h",
        ]
    )


def publish(jobs: int, bulk: str) -> None:
    if bulk == "group":
        group(noop.s(i=n) for n in range(jobs)).apply_async()
        return
    with app.producer_or_acquire() as producer:
        for n in range(jobs):
            noop.apply_async(kwargs={"i": n}, producer=producer)


def w1(jobs: int, bulk: str) -> dict:
    noop.apply_async(kwargs={"i": -1})  # connect first, as the others warm their pools
    t0 = time.perf_counter()
    publish(jobs, bulk)
    return {"jobs_per_s": jobs / (time.perf_counter() - t0)}


def w2(jobs: int) -> dict:
    noop.apply_async(kwargs={"i": -1})
    t0 = time.perf_counter()
    for n in range(jobs):
        noop.apply_async(kwargs={"i": n})
    return {"jobs_per_s": jobs / (time.perf_counter() - t0)}


def w3(jobs: int, a: argparse.Namespace) -> dict:
    publish(jobs, a.bulk)
    path = stamps_path("celery")
    stamps = Stamps(path)
    with Worker(worker_cmd(a), env={"BENCH_STAMPS": path, "BENCH_EXPECT": str(jobs)}) as w:

        def done() -> bool:
            w.check()
            if not w.alive():
                raise BenchError("the worker process exited")
            return -2 in stamps.read()

        broker = redis_client()
        wait_until(
            done,
            drain_timeout(jobs),
            "drain",
            every=0.05,
            progress=lambda: broker.llen(QUEUE),  # the worker prefetches as it goes
        )
    st = stamps.read()
    os.unlink(path)
    return {"jobs_per_s": jobs / (st[-2] - st[-3])}


def w4(jobs: int, a: argparse.Namespace, gap: float = 0.02) -> dict:
    path = stamps_path("celery")
    stamps = Stamps(path)
    sent: dict[int, float] = {}
    with Worker(worker_cmd(a), env={"BENCH_STAMPS": path}) as w:
        stamp.apply_async(kwargs={"i": -1})
        wait_until(lambda: w.check() or -1 in stamps.read(), 60, "worker start")
        time.sleep(0.2)
        for n in range(jobs):
            stamp.apply_async(kwargs={"i": n})
            sent[n] = time.time()
            time.sleep(gap)
        wait_until(lambda: len(stamps.read()) >= jobs + 1, 60, "all latency jobs run")
    figures = latency_figures(sent, stamps.read(), jobs)
    os.unlink(path)
    return figures


def main() -> None:
    p = driver_parser("broker")
    p.add_argument("--pool", default="prefork")
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--prefetch", type=int, default=128)
    p.add_argument("--bulk", choices=["loop", "group"], default="loop")
    a = p.parse_args()
    if a.workload == "version":
        emit_versions(version="celery", kombu="kombu", **{"redis-py": "redis"})
        return
    if a.workload == "worker":
        run_worker(a)
        return
    prepare()
    try:
        if a.workload == "W1":
            emit(w1(a.jobs, a.bulk))
        elif a.workload == "W2":
            emit(w2(a.jobs))
        elif a.workload == "W3":
            emit(w3(a.jobs, a))
        elif a.workload == "W4":
            emit(w4(a.jobs, a))
        else:
            raise SystemExit(f"unknown workload {a.workload}")
    finally:
        prepare()  # leave the broker database empty
    log(f"celery {a.workload} done")


if __name__ == "__main__":
    run_driver(main)
