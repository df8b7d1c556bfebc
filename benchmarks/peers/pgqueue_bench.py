"""pgqueue's side of the comparison (run with the project's venv, /work/venv).

    python pgqueue_bench.py {W1,W2,W3,W3bench,W4,version} JOBS DSN --scale S
                            [--concurrency 100] [--prefetch 500]

W1, W2, W4, W4F (where pgqueue bench has it) and W3bench are ``pgqueue bench --only Wn
--runs 1 --json --scale S``: the very numbers ``pgqueue bench`` prints, in its own
throwaway schema, with its own defaults.

W3 is the drain measured the way the peers' drains are: the jobs are queued first,
then a ``pgqueue work`` process starts, and the clock runs from the first job's
``started_at`` to the last job's ``finished_at`` (the database's own timestamps).
The worker gets the same ``-c`` and ``--prefetch`` as ``pgqueue bench`` gives its W3
worker (read from ``pgqueue bench --help``). ``pgqueue bench``'s W3 (reported as
W3bench) starts its worker first and runs its clock from the enqueue transaction's
``created_at``, so it also counts the COPY of the jobs; it is shown beside, for
reference. This part uses only public surfaces: the CLI (``migrate``, ``work``),
``App.enqueue_many`` and the documented ``jobs`` table.

Subprocesses run from a scratch directory, so ``-m pgqueue.cli`` imports the pgqueue that
this interpreter imports (PYTHONPATH or the installed one), not one in the caller's cwd.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import psycopg
from _common import (
    BenchError,
    Worker,
    drain_timeout,
    driver_parser,
    emit,
    log,
    run_driver,
    wait_until,
)

CLI = [sys.executable, "-m", "pgqueue.cli"]


def last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else "(no output)"


def help_options(command: str) -> dict[str, str]:
    """``pgqueue COMMAND --help``'s options, each with its (unwrapped) help text."""
    text = subprocess.run(
        [*CLI, command, "--help"], capture_output=True, text=True, timeout=60
    ).stdout
    opts: dict[str, str] = {}
    current = None
    for line in text.split("Options:", 1)[-1].splitlines():
        m = re.match(r"\s{1,4}(?:-\w, )?(--[\w-]+)(.*)", line)
        if m:
            current = m.group(1)
            opts[current] = m.group(2)
        elif current:
            opts[current] += " " + line.strip()
    return opts


def bench_defaults() -> dict:
    """What ``pgqueue bench`` gives its drain worker, and which workloads it has."""
    bench, work = help_options("bench"), help_options("work")
    out: dict = {}
    for name in ("concurrency", "prefetch"):
        m = re.search(r"\[default: (\d+)", bench.get(f"--{name}", ""))
        if m and f"--{name}" in work:
            out[name] = int(m.group(1))
    m = re.search(r"\[([\w|]+)\]", bench.get("--only", ""))
    out["workloads"] = m.group(1).split("|") if m else ["W1", "W2", "W3", "W4"]
    return out


def bench_cli(dsn: str, workload: str, scale: float, timeout: float) -> dict:
    proc = subprocess.run(
        [
            *CLI,
            "--dsn",
            dsn,
            "bench",
            "--only",
            workload,
            "--runs",
            "1",
            "--json",
            "--scale",
            repr(scale),
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    sys.stderr.write(proc.stderr)
    if proc.returncode != 0:
        raise BenchError(f"pgqueue bench exited with {proc.returncode}: {last_line(proc.stderr)}")
    return json.loads(proc.stdout)[workload]["median"]


def drain_prefilled(
    dsn: str, jobs: int, concurrency: int | None, prefetch: int | None = None
) -> dict:
    from pgqueue import App, JobSpec

    schema = f"pgqueue_cmp_{uuid.uuid4().hex[:8]}"
    base = [*CLI, "--dsn", dsn, "--schema", schema]
    try:
        mig = subprocess.run([*base, "migrate"], capture_output=True, text=True, timeout=120)
        sys.stderr.write(mig.stdout + mig.stderr)
        if mig.returncode != 0:
            raise BenchError(
                f"pgqueue migrate exited with {mig.returncode}: {last_line(mig.stderr)}"
            )
        app = App(dsn, schema=schema, strict_tasks=False)
        try:
            app.enqueue_many(JobSpec("bench.noop", kwargs={"i": n}) for n in range(jobs))
        finally:
            app.close()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'VACUUM ANALYZE "{schema}".jobs')
        defaults = bench_defaults()
        cmd = [
            *base,
            "--app",
            "pgqueue.bench.tasks:app",
            "work",
            "-q",
            "default",
            "-c",
            str(concurrency or defaults.get("concurrency", 100)),
            "--log-level",
            "warning",
            "--shutdown-timeout",
            "5",
        ]
        if prefetch is not None:
            cmd += ["--prefetch", str(prefetch)]
        elif "prefetch" in defaults:
            cmd += ["--prefetch", str(defaults["prefetch"])]
        with Worker(cmd) as w, psycopg.connect(dsn, autocommit=True) as conn:
            left = {"n": jobs}

            def done() -> bool:
                w.check()
                if not w.alive():
                    raise BenchError("the worker process exited")
                row = conn.execute(
                    f"SELECT count(*) FROM \"{schema}\".jobs WHERE state IN ('queued', 'running')"
                ).fetchone()
                left["n"] = row[0]
                return row[0] == 0

            wait_until(
                done,
                drain_timeout(jobs),
                "drain",
                every=0.05,
                progress=lambda: left["n"],
            )
        with psycopg.connect(dsn, autocommit=True) as conn:
            secs, ok = conn.execute(
                f"SELECT EXTRACT(EPOCH FROM max(finished_at) - min(started_at)),"
                f" count(*) FILTER (WHERE state = 'succeeded') FROM \"{schema}\".all_jobs"
            ).fetchone()
        if ok != jobs:
            raise BenchError(f"{ok} of {jobs} jobs succeeded")
        return {"jobs_per_s": jobs / float(secs)}
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def main() -> None:
    p = driver_parser()
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="W3 worker -c (default: what pgqueue bench uses)",
    )
    p.add_argument(
        "--prefetch",
        type=int,
        default=None,
        help="W3 worker --prefetch (default: what pgqueue bench uses)",
    )
    p.add_argument("--timeout", type=float, default=600)
    a = p.parse_args()
    if a.workload == "version":
        from importlib.metadata import version

        import pgqueue

        rev = subprocess.run(
            [
                "git",
                "-C",
                os.path.dirname(os.path.dirname(pgqueue.__file__)),
                "describe",
                "--always",
                "--dirty",
            ],
            capture_output=True,
            text=True,
        ).stdout.strip()
        root = os.path.dirname(os.path.dirname(os.path.abspath(pgqueue.__file__)))
        if not rev and os.path.exists(os.path.join(root, "REVISION")):  # an exported tree
            with open(os.path.join(root, "REVISION")) as f:
                rev = f.read().strip() + " (exported)"
        emit(
            {
                "version": version("pgqueue"),
                "git": rev or "?",
                "from": os.path.dirname(os.path.dirname(os.path.abspath(pgqueue.__file__))),
                "psycopg": version("psycopg"),
                "bench": bench_defaults(),
            }
        )
        return
    if a.workload in ("W1", "W2", "W4", "W4F"):
        emit(bench_cli(a.dsn, a.workload, a.scale, a.timeout))
    elif a.workload == "W3bench":
        emit(bench_cli(a.dsn, "W3", a.scale, a.timeout))
    elif a.workload == "W3":
        emit(drain_prefilled(a.dsn, a.jobs, a.concurrency, a.prefetch))
    else:
        raise SystemExit(f"unknown workload {a.workload}")
    log(f"pgqueue {a.workload} done")


if __name__ == "__main__":
    run_driver(main)
