"""``pgqueue bench`` runs its workloads end to end (tiny scale: correctness, not speed)."""

from __future__ import annotations

import json

import psycopg

from .test_cli import run_cli


def _bench_schemas(dsn: str) -> set[str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'pgqueue_bench_%'"
        ).fetchall()
    return {r[0] for r in rows}


def test_bench_runs_the_drain_and_concurrent_producer_workloads(pg_dsn: str) -> None:
    before = _bench_schemas(pg_dsn)
    code, out, err = run_cli(
        "--dsn", pg_dsn, "bench", "--only", "W3", "--only", "W3Q", "--only", "W6A",
        "--only", "W6T", "--scale", "0.02", "--runs", "1", "--json",
    )  # fmt: skip
    assert code == 0, err
    results = json.loads(out)
    assert set(results) == {"W3", "W3Q", "W6A", "W6T"}
    for entry in results.values():
        assert entry["median"]["jobs_per_s"] > 0
    assert _bench_schemas(pg_dsn) <= before  # its throwaway schema is gone


def test_bench_runs_the_observed_drains(pg_dsn: str) -> None:
    """W3M (metrics served) and W3O (metrics + tracing in producer and worker)."""
    code, out, err = run_cli(
        "--dsn", pg_dsn, "bench", "--only", "W3M", "--only", "W3O",
        "--scale", "0.02", "--runs", "1", "--json",
    )  # fmt: skip
    assert code == 0, err
    results = json.loads(out)
    assert set(results) == {"W3M", "W3O"}
    assert "every span sampled" in results["W3O"]["title"]
    for entry in results.values():
        assert entry["median"]["jobs_per_s"] > 0
