"""pgqueue's side of the comparison (run with the project's venv, /work/venv).

    python pgqueue_bench.py {W1,W2,W3,W3bench,W4,version} JOBS DSN --scale S [--concurrency 100]

W1, W2, W4 and W3bench are ``pgqueue bench --only Wn --runs 1 --json --scale S``: the
very numbers ``pgqueue bench`` prints, in its own throwaway schema.

W3 is the drain measured the way the peers' drains are: the jobs are queued first,
then a ``pgqueue work`` process starts, and the clock runs from the first job's
``started_at`` to the last job's ``finished_at`` (the database's own timestamps).
``pgqueue bench``'s W3 (reported as W3bench) starts its worker first and runs its
clock from the enqueue transaction's ``created_at``, so it also counts the COPY of
the jobs; it is shown beside, for reference. This part uses only public surfaces: the
CLI (``migrate``, ``work``), ``App.enqueue_many`` and the documented ``jobs`` table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import BenchError, Worker, emit, log, wait_until  # noqa: E402

import psycopg  # noqa: E402

CLI = [sys.executable, "-m", "pgqueue.cli"]


def bench_cli(dsn: str, workload: str, scale: float, timeout: float) -> dict:
    proc = subprocess.run(
        CLI + ["--dsn", dsn, "bench", "--only", workload, "--runs", "1", "--json",
               "--scale", repr(scale)],
        stdout=subprocess.PIPE, stderr=sys.stderr, text=True, timeout=timeout,
    )
    if proc.returncode != 0:
        raise BenchError(f"pgqueue bench exited with {proc.returncode}")
    return json.loads(proc.stdout)[workload]["median"]


def drain_prefilled(dsn: str, jobs: int, concurrency: int) -> dict:
    from pgqueue import App, JobSpec

    schema = f"pgqueue_cmp_{uuid.uuid4().hex[:8]}"
    base = CLI + ["--dsn", dsn, "--schema", schema]
    try:
        subprocess.run(base + ["migrate"], check=True, stdout=sys.stderr, timeout=120)
        app = App(dsn, schema=schema, strict_tasks=False)
        try:
            app.enqueue_many(JobSpec("bench.noop", kwargs={"i": n}) for n in range(jobs))
        finally:
            app.close()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'VACUUM ANALYZE "{schema}".jobs')
        cmd = base + ["--app", "pgqueue.bench.tasks:app", "work", "-q", "default",
                      "-c", str(concurrency), "--log-level", "warning", "--shutdown-timeout", "5"]
        with Worker(cmd) as w, psycopg.connect(dsn, autocommit=True) as conn:
            def done() -> bool:
                w.check()
                if not w.alive():
                    raise BenchError("the worker process exited")
                row = conn.execute(
                    f"SELECT count(*) FROM \"{schema}\".jobs WHERE state IN ('queued', 'running')"
                ).fetchone()
                return row[0] == 0
            wait_until(done, max(120.0, jobs / 50), "drain", every=0.05)
        with psycopg.connect(dsn, autocommit=True) as conn:
            secs, ok = conn.execute(
                f"SELECT EXTRACT(EPOCH FROM max(finished_at) - min(started_at)),"
                f" count(*) FILTER (WHERE state = 'succeeded') FROM \"{schema}\".jobs"
            ).fetchone()
        if ok != jobs:
            raise BenchError(f"{ok} of {jobs} jobs succeeded")
        return {"jobs_per_s": jobs / float(secs)}
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("workload")
    p.add_argument("jobs", type=int)
    p.add_argument("dsn")
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--concurrency", type=int, default=100)
    p.add_argument("--timeout", type=float, default=600)
    a = p.parse_args()
    if a.workload == "version":
        from importlib.metadata import version

        import pgqueue

        rev = subprocess.run(
            ["git", "-C", os.path.dirname(os.path.dirname(pgqueue.__file__)), "describe",
             "--always", "--dirty"], capture_output=True, text=True,
        ).stdout.strip()
        emit({"version": version("pgqueue"), "git": rev or "?", "psycopg": version("psycopg")})
        return
    if a.workload in ("W1", "W2", "W4"):
        emit(bench_cli(a.dsn, a.workload, a.scale, a.timeout))
    elif a.workload == "W3bench":
        emit(bench_cli(a.dsn, "W3", a.scale, a.timeout))
    elif a.workload == "W3":
        emit(drain_prefilled(a.dsn, a.jobs, a.concurrency))
    else:
        raise SystemExit(f"unknown workload {a.workload}")
    log(f"pgqueue {a.workload} done")


if __name__ == "__main__":
    try:
        main()
    except BenchError as e:
        print(f"BenchError: {e}", file=sys.stderr)
        sys.exit(2)
