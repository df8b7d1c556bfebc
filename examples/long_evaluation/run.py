"""Run an evaluation of 10 steps, kill -9 its worker after step 4 or so, start another:
it resumes after the last checkpoint, and the result row is written exactly once."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import psycopg

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from _runner import app_settings, migrate, worker  # noqa: E402

STEPS = 10


def wait_for(what: str, check, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)
    return value


def main() -> None:
    dsn, schema = app_settings()
    migrate(dsn, schema)
    from tasks import app, evaluate

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS example_eval_steps, example_eval_results")
        conn.execute("CREATE TABLE example_eval_steps (run_id int, step int)")
        conn.execute("CREATE TABLE example_eval_results (run_id int, mean float8)")
        job = evaluate.defer(7, STEPS)
        with worker("tasks:app", dsn, schema, "--lease", "2") as first:

            def progress() -> float:
                got = (app.admin.job(job.id).get("progress") or {}).get("done") or 0
                return float(got) if got >= 4 else 0.0

            done = wait_for("4 steps", progress)
            first.kill()  # kill -9: no shutdown, no hand-back
            first.wait()
            print(f"killed the worker after {done:.0f} of {STEPS} steps (progress)")
        with worker("tasks:app", dsn, schema, "--lease", "2"):
            print("result:", job.result(timeout=120))
        ran = conn.execute(
            "SELECT step, count(*) FROM example_eval_steps GROUP BY step ORDER BY step"
        ).fetchall()
        twice = [s + 1 for s, n in ran if n > 1]
        print(f"steps run: {len(ran)} of {STEPS}; run twice: {twice or 'none'}")
        rows = conn.execute("SELECT count(*) FROM example_eval_results").fetchone()
        print(f"result rows: {rows[0] if rows else '?'}")
        print(f"attempts: {app.admin.job(job.id)['attempt']}")
    app.close()


if __name__ == "__main__":
    main()
