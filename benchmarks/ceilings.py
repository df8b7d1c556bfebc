"""What this machine's PostgreSQL can do for W1 and W2 with no queue code at all.

    python benchmarks/ceilings.py [--dsn DSN] [--runs 3]

W1 ceiling: one COPY of 20,000 ready-made rows (ids already taken, JSON already text)
into a fresh pgqueue jobs table, with its indexes, checks and NOTIFY trigger: the
statement alone is timed, no encoding, no id reservation. W2 ceiling: 2,000 single-row
INSERTs of one job each into that table from psycopg, a prepared statement in autocommit
(each its own commit), no validation, no pool. A queue built on this table cannot be
faster than these; compare them with the peers' W1/W2 from compare.py in the same hour.
Prints one JSON line (medians of --runs) and drops its schema.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import psycopg

from pgqueue import App

W1_JOBS, W2_JOBS = 20_000, 2_000
INSERT = (
    "INSERT INTO {s}.jobs (queue, task, args, kwargs, priority, max_attempts) "
    "VALUES (%s, %s, %s::jsonb, %s::jsonb, %s, %s) RETURNING id"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--runs", type=int, default=3)
    a = parser.parse_args()
    schema = "pgqueue_ceilings"
    w1: list[float] = []
    w2: list[float] = []
    with psycopg.connect(a.dsn, autocommit=True) as conn:
        for _ in range(a.runs):
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            App(a.dsn, schema=schema).migrate()
            ids = conn.execute(
                f"SELECT array_agg(nextval('{schema}.jobs_id_seq'::regclass)) "
                "FROM generate_series(1, %s)",
                (W1_JOBS,),
            ).fetchone()[0]  # type: ignore[index]
            text = "".join(
                f'{i}\tdefault\tbench.noop\t[]\t{{"i":{n}}}\t0\t20\t\\N\n'
                for n, i in enumerate(ids)
            )
            with conn.cursor() as cur:
                started = time.perf_counter()
                with cur.copy(
                    f"COPY {schema}.jobs (id, queue, task, args, kwargs, priority, "
                    "max_attempts, group_key) FROM STDIN"
                ) as copy:
                    copy.write(text)
                w1.append(W1_JOBS / (time.perf_counter() - started))
            sql = INSERT.format(s=schema)
            conn.execute(sql, ("default", "bench.noop", "[]", '{"i":-1}', 0, 20), prepare=True)
            started = time.perf_counter()
            for n in range(W2_JOBS):
                conn.execute(
                    sql, ("default", "bench.noop", "[]", f'{{"i":{n}}}', 0, 20), prepare=True
                ).fetchone()
            w2.append(W2_JOBS / (time.perf_counter() - started))
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    print(
        json.dumps(
            {
                "W1_copy_rows_per_s": round(statistics.median(w1)),
                "W2_insert_per_s": round(statistics.median(w2)),
                "W1_runs": [round(x) for x in w1],
                "W2_runs": [round(x) for x in w2],
            }
        )
    )


if __name__ == "__main__":
    main()
