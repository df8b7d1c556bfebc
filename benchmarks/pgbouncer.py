"""pgqueue direct and through pgbouncer (transaction mode), in the same run.

    python benchmarks/pgbouncer.py --dsn postgresql://postgres@127.0.0.1:5432/test --runs 3

Starts Debian's pgbouncer (transaction mode, default_pool_size 20) on a free loopback port
in front of --dsn (the harness of tests/pgbouncer.py), then runs `pgqueue bench --only W3
--only W4 --runs 1 --json` once per variant per round, the variants interleaved round by
round:

- direct: --dsn itself;
- pgbouncer: the DSN through pgbouncer, nothing else set (workers poll every 0.5 s);
- pgbouncer+listen: the same with PGQUEUE_LISTEN_DSN=--dsn (LISTEN on a direct
  connection, everything else through pgbouncer).

Prints the medians and each variant's ratio to direct; --json prints them as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.pgbouncer import PgBouncer  # noqa: E402  (the harness the tests use)

METRICS = [("W3", "jobs_per_s"), ("W4", "p50_ms"), ("W4", "p99_ms")]


def bench(dsn: str, env: dict[str, str]) -> dict[str, dict[str, float]]:
    out = subprocess.run(
        [sys.executable, "-m", "pgqueue.cli", "--dsn", dsn, "bench",
         "--only", "W3", "--only", "W4", "--runs", "1", "--json"],
        env=env, capture_output=True, text=True, check=False, cwd=ROOT,
    )  # fmt: skip
    if out.returncode != 0:
        raise SystemExit(f"pgqueue bench failed on {dsn}:\n{out.stderr[-2000:]}")
    data: dict[str, Any] = json.loads(out.stdout)
    return {key: entry["median"] for key, entry in data.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    base = {k: v for k, v in os.environ.items() if not k.startswith("PGQUEUE_")}
    samples: dict[str, list[dict[str, dict[str, float]]]] = {}
    with PgBouncer(args.dsn, mode="transaction", pool_size=20) as bouncer:
        variants = {
            "direct": (args.dsn, base),
            "pgbouncer": (bouncer.dsn, base),
            "pgbouncer+listen": (bouncer.dsn, {**base, "PGQUEUE_LISTEN_DSN": args.dsn}),
        }
        for run in range(args.runs):
            for name, (dsn, env) in variants.items():
                print(f"run {run + 1}/{args.runs}: {name} ...", file=sys.stderr)
                samples.setdefault(name, []).append(bench(dsn, env))
    medians = {
        name: {
            f"{w} {m}": statistics.median(s[w][m] for s in runs) for w, m in METRICS
        }
        for name, runs in samples.items()
    }
    if args.json:
        print(json.dumps({"medians": medians, "runs": samples}, indent=2))
        return
    direct = medians["direct"]
    print(f"{'variant':<18}" + "".join(f"{w + ' ' + m:>22}" for w, m in METRICS))
    for name, med in medians.items():
        cells = []
        for w, m in METRICS:
            key = f"{w} {m}"
            ratio = med[key] / direct[key] if direct[key] else float("nan")
            cells.append(f"{med[key]:>12,.1f} ({ratio:4.2f}x)")
        print(f"{name:<18}" + "".join(f"{c:>22}" for c in cells))


if __name__ == "__main__":
    main()
