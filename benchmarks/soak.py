"""A soak: steady enqueue and drain for a while; does throughput stay flat and do dead
tuples and the table stay bounded?

    python benchmarks/soak.py --dsn postgresql://postgres@127.0.0.1/test --minutes 10

Runs in a throwaway schema (dropped afterwards) with one `pgqueue work` process that
keeps succeeded jobs for --keep seconds (the pruner deletes older ones, as retention
does in production, only sooner). Every --every seconds it prints: jobs finished per
second over the interval, queue depth, n_live_tup / n_dead_tup of the (hot) jobs table,
its total size with indexes, how often it was vacuumed (autovacuum or pgqueue's own
vacuumer), and the succeeded jobs kept in succeeded_jobs with that table's size.
--json writes all samples.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import psycopg

from pgqueue.bench import bench_schema
from pgqueue.bench.workloads import worker_process


def sample(conn: psycopg.Connection[tuple[object, ...]], schema: str) -> dict[str, float]:
    row = conn.execute(
        f"""SELECT
              (SELECT count(*) FROM "{schema}".jobs WHERE state = 'queued'),
              (SELECT count(*) FROM "{schema}".succeeded_jobs),
              s.n_live_tup, s.n_dead_tup, pg_total_relation_size(s.relid),
              coalesce(s.autovacuum_count, 0) + coalesce(s.vacuum_count, 0),
              pg_total_relation_size('"{schema}".succeeded_jobs'::regclass)
            FROM pg_stat_user_tables s WHERE s.schemaname = %s AND s.relname = 'jobs'""",
        (schema,),
    ).fetchone()
    assert row is not None
    queued, kept, live, dead, size, vacuums, history = (float(v) for v in row)  # type: ignore[arg-type]
    return {
        "queued": queued,
        "kept_succeeded": kept,
        "n_live_tup": live,
        "n_dead_tup": dead,
        "total_bytes": size,
        "vacuums": vacuums,
        "succeeded_jobs_bytes": history,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dsn", default=None)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--rate", type=int, default=1000, help="jobs enqueued per second")
    ap.add_argument("--every", type=float, default=30.0, help="seconds between samples")
    ap.add_argument("--keep", type=float, default=60.0, help="seconds succeeded jobs are kept")
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    samples: list[dict[str, float]] = []
    with (
        bench_schema(args.dsn) as app,
        psycopg.connect(app.dsn, autocommit=True) as conn,
        worker_process(app, args.concurrency, "--keep-succeeded", str(args.keep)),
    ):
        start = time.monotonic()
        end = start + args.minutes * 60
        next_sample = start
        tick = 0.1
        batch = max(1, int(args.rate * tick))
        enqueued = 0
        last_done, last_t = 0.0, start
        print(
            f"{'t (s)':>6} {'done/s':>8} {'queued':>7} {'live':>8} {'dead':>8} "
            f"{'MB':>7} {'vacuums':>7} {'kept':>8} {'hist MB':>7}",
            file=sys.stderr,
        )
        while True:
            now = time.monotonic()
            if now >= next_sample:
                s = sample(conn, app.schema)
                done = enqueued - s["queued"]  # finished or running, approximately
                s["t"] = round(now - start, 1)
                s["done_per_s"] = (done - last_done) / max(now - last_t, 1e-9) if samples else 0
                last_done, last_t = done, now
                samples.append(s)
                print(
                    f"{s['t']:>6.0f} {s['done_per_s']:>8.0f} {s['queued']:>7.0f} "
                    f"{s['n_live_tup']:>8.0f} {s['n_dead_tup']:>8.0f} "
                    f"{s['total_bytes'] / 2**20:>7.1f} {s['vacuums']:>7.0f} "
                    f"{s['kept_succeeded']:>8.0f} {s['succeeded_jobs_bytes'] / 2**20:>7.1f}",
                    file=sys.stderr,
                )
                next_sample += args.every
            if now >= end:
                break
            app.enqueue_batch("bench.noop", [{"i": enqueued + n} for n in range(batch)])
            enqueued += batch
            time.sleep(max(0.0, tick - (time.monotonic() - now)))
    if args.json:
        print(json.dumps(samples, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
