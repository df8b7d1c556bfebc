"""The dashboard's server time with a big history: is every page under 200 ms?

    python benchmarks/dashboard.py --dsn postgresql://postgres@127.0.0.1/test
    python benchmarks/dashboard.py --hours 1      # the whole history finished in the last hour

Fills a throwaway schema (dropped afterwards) with --history succeeded jobs in
succeeded_jobs, finished over the last --hours, on 10 queues and 20 tasks; plus a hot
jobs table: --queued queued jobs, 2,000 failed (dead letters with 40 distinct errors),
50 running. VACUUM ANALYZE, then serves the dashboard (read-only, uvicorn on 127.0.0.1)
and requests each page --runs times after 3 warm-ups. Server time is measured inside
the process, by an ASGI wrapper around the dashboard: from the request reaching the app
to the last byte of its response (the HTTP client's time is not counted). The overview's
chart cache is off, so every /api/overview runs the history query. --json prints all
figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import uvicorn

from pgqueue.bench import bench_schema
from pgqueue.dashboard import Auth, create_app
from pgqueue.dashboard import data as dashboard_data

COLUMNS = (
    "id, queue, task, args, kwargs, state, priority, run_at, attempt, max_attempts, "
    "error_count, lost_count, worker_id, errors, result, created_at, started_at, finished_at"
)


def fill(conn: psycopg.Connection[Any], schema: str, history: int, hours: float,
         queued: int) -> None:  # fmt: skip
    s = f'"{schema}"'
    span = f"{hours} hours"
    # succeeded: ids 1..history, finished evenly over the span, each ran ~50 ms after
    # waiting up to 2 s
    conn.execute(
        f"""INSERT INTO {s}.succeeded_jobs ({COLUMNS})
        SELECT g, 'q' || (g %% 10), 'tasks.t' || (g %% 20), jsonb_build_array(g, 'user-' || g),
               '{{}}'::jsonb, 'succeeded', 0,
               f - interval '2050 ms' + (g %% 2000) * interval '1 ms',
               1, 20, 0, 0, 'host:1:w', '[]'::jsonb, jsonb_build_object('ok', g),
               f - interval '3 s', f - interval '50 ms', f
        FROM generate_series(1, %(n)s) AS g,
             LATERAL (SELECT now() - interval '{span}' * (1 - g::float8 / %(n)s)) AS t(f)""",
        {"n": history},
    )
    conn.execute(f"SELECT setval(pg_get_serial_sequence('{s}.jobs', 'id'), %(n)s)", {"n": history})
    conn.execute(
        f"""INSERT INTO {s}.jobs (queue, task, args)
        SELECT 'q' || (g %% 10), 'tasks.t' || (g %% 20), jsonb_build_array(g)
        FROM generate_series(1, %(n)s) AS g""",
        {"n": queued},
    )
    conn.execute(
        f"""INSERT INTO {s}.jobs (queue, task, args, state, attempt, error_count, errors,
                                  started_at, finished_at)
        SELECT 'q' || (g %% 10), 'tasks.t' || (g %% 20), jsonb_build_array(g), 'failed', 20, 20,
               jsonb_build_array(jsonb_build_object('attempt', 20, 'kind', 'error',
                   'type', 'builtins.ValueError', 'message', 'bad input ' || (g %% 40),
                   'traceback', 'Traceback (most recent call last): ...')),
               now() - interval '1 minute', now() - (g %% 3600) * interval '1 s'
        FROM generate_series(1, 2000) AS g""",
        {},
    )
    conn.execute(
        f"""INSERT INTO {s}.jobs (queue, task, args, state, attempt, worker_id, started_at,
                                  lease_expires_at)
        SELECT 'q' || (g %% 10), 'tasks.t' || (g %% 20), jsonb_build_array(g), 'running', 1,
               'host:' || (g %% 5) || ':w', now(), now() + interval '1 hour'
        FROM generate_series(1, 50) AS g""",
        {},
    )
    conn.execute(
        f"""INSERT INTO {s}.workers (id, host, pid, queues, concurrency)
        SELECT 'host:' || g || ':w', 'host', g, ARRAY['q0', 'q1'], 10
        FROM generate_series(0, 4) AS g""",
        {},
    )
    conn.execute(f"VACUUM (ANALYZE) {s}.succeeded_jobs")
    conn.execute(f"VACUUM (ANALYZE) {s}.jobs")


class Timed:
    """An ASGI wrapper that notes each request's server time, by path + query."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.times: dict[str, list[float]] = defaultdict(list)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()

        async def timed_send(message: Any) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                key = scope["path"] + ("?" + scope["query_string"].decode()
                                       if scope["query_string"] else "")  # fmt: skip
                self.times[key].append((time.perf_counter() - start) * 1000)

        await self.app(scope, receive, timed_send)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--history", type=int, default=1_000_000, help="succeeded jobs")
    parser.add_argument("--hours", type=float, default=24.0, help="finished over this span")
    parser.add_argument("--queued", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    dashboard_data.HISTORY_TTL = 0.0  # measure the history query on every poll

    with bench_schema(args.dsn) as app:
        t0 = time.perf_counter()
        with psycopg.connect(app.dsn, autocommit=True) as conn:
            fill(conn, app.schema, args.history, args.hours, args.queued)
        print(f"filled {args.history:,} succeeded + {args.queued:,} queued + 2,000 failed + "
              f"50 running jobs in {time.perf_counter() - t0:.0f} s", file=sys.stderr)  # fmt: skip
        deep = args.history // 2
        middle = (datetime.now(UTC) - timedelta(hours=args.hours / 2)).strftime("%Y-%m-%dT%H:%M")
        pages = [
            ("overview", "/"),
            ("overview poll (JSON, charts)", "/api/overview"),
            ("queue page", "/queues/q3"),
            ("jobs, first page", "/jobs"),
            ("jobs, deep page", f"/jobs?before={deep}"),
            ("jobs, succeeded", "/jobs?state=succeeded"),
            ("jobs, failed", "/jobs?state=failed"),
            ("jobs, queue + task", "/jobs?queue=q3&task=tasks.t13"),
            ("jobs, search in args", f"/jobs?search=user-{args.history - 5000}"),
            ("jobs, created before mid-span", f"/jobs?until={middle}"),
            ("job page", f"/jobs/{deep}"),
            ("dead letters", "/dead"),
            ("workers", "/workers"),
        ]
        timed = Timed(create_app(app, auth=Auth()))
        server = uvicorn.Server(uvicorn.Config(timed, host="127.0.0.1", port=0,
                                               log_config=None, log_level="warning"))  # fmt: skip
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        results = {}
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
                for name, path in pages:
                    for _ in range(3):
                        assert http.get(path).status_code == 200, path
                    timed.times.clear()
                    for _ in range(args.runs):
                        http.get(path)
                    ms = sorted(next(iter(timed.times.values())))
                    results[name] = {
                        "path": path,
                        "median_ms": round(statistics.median(ms), 1),
                        "p95_ms": round(ms[int(len(ms) * 0.95) - 1], 1),
                        "max_ms": round(ms[-1], 1),
                    }
        finally:
            server.should_exit = True
            thread.join(10)
    if args.json:
        print(json.dumps({"args": vars(args), "pages": results}, indent=2))
        return 0
    print(f"{'page':<32} {'median ms':>10} {'p95 ms':>8} {'max ms':>8}  path")
    for name, r in results.items():
        flag = "" if r["median_ms"] < 200 else "  (over 200 ms)"
        print(f"{name:<32} {r['median_ms']:>10} {r['p95_ms']:>8} {r['max_ms']:>8}  "
              f"{r['path']}{flag}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
