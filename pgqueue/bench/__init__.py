"""``pgqueue bench``: W1-W5 in a throwaway schema, medians of several runs.

The schema (``pgqueue_bench_<random>``) is created, migrated and dropped afterwards,
also when the run fails or is interrupted, so it is safe on a real database.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg

from ..app import App
from ..migrate import upgrade
from . import workloads


@dataclass
class BenchConfig:
    runs: int = 3
    bulk_jobs: int = 20_000
    single_jobs: int = 2_000
    drain_jobs: int = 20_000
    latency_jobs: int = 200
    concurrency: int = 100
    prefetch: int = 500
    backlog: int = 0
    only: list[str] = field(
        default_factory=lambda: ["W1", "W2", "W3", "W4", "W4F", "W5", "W6A", "W6T"]
    )
    """W3Q (W3 with the worker at --log-level warning), W3M (W3 with Prometheus metrics)
    and W3O (W3 with metrics and tracing) run only when asked (--only)."""


def _sampler() -> str:
    """Which spans W3O samples: OTEL_TRACES_SAMPLER (the SDK reads it), else all."""
    name = os.environ.get("OTEL_TRACES_SAMPLER")
    if not name:
        return "every span sampled"
    arg = os.environ.get("OTEL_TRACES_SAMPLER_ARG")
    return f"sampler {name}" + (f" {arg}" if arg else "")


@contextlib.contextmanager
def bench_schema(dsn: str | None) -> Iterator[App]:
    """A migrated throwaway schema; dropped on the way out whatever happened."""
    app = App(dsn, schema=f"pgqueue_bench_{uuid.uuid4().hex[:8]}", strict_tasks=False)
    try:
        upgrade(app.dsn, app.schema)
        yield app
    finally:
        app.close()
        with psycopg.connect(app.dsn, autocommit=True, prepare_threshold=None) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{app.schema}" CASCADE')


def run(dsn: str | None, cfg: BenchConfig, progress: Callable[[str], None]) -> dict[str, Any]:
    """Run the selected workloads ``cfg.runs`` times; return per-run figures and medians."""
    plan: list[tuple[str, str, Callable[[App], dict[str, float]]]] = [
        ("W1", f"bulk enqueue {cfg.bulk_jobs:,}", lambda a: workloads.w1_bulk(a, cfg.bulk_jobs)),
        (
            "W2",
            f"single enqueue {cfg.single_jobs:,}",
            lambda a: workloads.w2_single(a, cfg.single_jobs),
        ),
        (
            "W3",
            f"drain {cfg.drain_jobs:,} (c={cfg.concurrency}, prefetch={cfg.prefetch})",
            lambda a: workloads.w3_drain(a, cfg.drain_jobs, cfg.concurrency, 0, cfg.prefetch),
        ),
        (
            "W3Q",
            f"drain {cfg.drain_jobs:,}, worker at --log-level warning (no per-job lines)",
            lambda a: workloads.w3_drain(
                a, cfg.drain_jobs, cfg.concurrency, 0, cfg.prefetch, log_level="warning"
            ),
        ),
        (
            "W3M",
            f"drain {cfg.drain_jobs:,}, worker serving Prometheus metrics",
            lambda a: workloads.w3_drain(
                a, cfg.drain_jobs, cfg.concurrency, 0, cfg.prefetch, observed="metrics"
            ),
        ),
        (
            "W3O",
            f"drain {cfg.drain_jobs:,}, metrics + OpenTelemetry tracing ({_sampler()})",
            lambda a: workloads.w3_drain(
                a, cfg.drain_jobs, cfg.concurrency, 0, cfg.prefetch, observed="all"
            ),
        ),
        (
            "W6A",
            f"concurrent single enqueue {cfg.single_jobs * 2:,}, 64 asyncio tasks",
            lambda a: workloads.w6_concurrent(a, cfg.single_jobs * 2, 64, threads=False),
        ),
        (
            "W6T",
            f"concurrent single enqueue {cfg.single_jobs * 2:,}, 16 threads",
            lambda a: workloads.w6_concurrent(a, cfg.single_jobs * 2, 16, threads=True),
        ),
        (
            "W4",
            f"wake latency, {cfg.latency_jobs} jobs",
            lambda a: workloads.w4_latency(a, cfg.latency_jobs),
        ),
        (
            "W4F",
            f"wake latency, {cfg.latency_jobs} jobs, opt-in --fast-claims",
            lambda a: workloads.w4_latency(a, cfg.latency_jobs, fast_claims=True),
        ),
    ]
    if cfg.backlog:
        plan.append(
            (
                "W5",
                f"drain {cfg.drain_jobs:,} with {cfg.backlog:,} behind",
                lambda a: workloads.w3_drain(
                    a, cfg.drain_jobs, cfg.concurrency, cfg.backlog, cfg.prefetch
                ),
            )
        )
    plan = [p for p in plan if p[0] in cfg.only]
    results: dict[str, Any] = {}
    with bench_schema(dsn) as app:
        for run_no in range(1, cfg.runs + 1):
            # Interleaved: each run does every workload, starting one further along each
            # time, so that no workload always drains first (or after the same one).
            turn = (run_no - 1) % len(plan) if plan else 0
            for key, title, fn in plan[turn:] + plan[:turn]:
                workloads.reset(app)
                progress(f"run {run_no}/{cfg.runs} {key} {title} ...")
                figures = fn(app)
                progress(
                    f"run {run_no}/{cfg.runs} {key} "
                    + ", ".join(f"{k}={v:,.1f}" for k, v in figures.items())
                )
                entry = results.setdefault(key, {"title": title, "runs": []})
                entry["runs"].append(figures)
    for entry in results.values():
        metrics = entry["runs"][0].keys()
        entry["median"] = {m: statistics.median(r[m] for r in entry["runs"]) for m in metrics}
    return results
