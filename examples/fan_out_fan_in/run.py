"""Fan-out / fan-in with dependencies: a summary job waits for its parts (after=)."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from _runner import app_settings, migrate, worker  # noqa: E402

from pgqueue import JobCancelled  # noqa: E402


def main() -> None:
    dsn, schema = app_settings()
    migrate(dsn, schema)
    from tasks import app, fan_out_fan_in

    parts, summary = fan_out_fan_in([1, 2, 3, 4, 5])
    print(f"fan-out: {len(parts)} scoring jobs; summary job {summary} is", app.job(summary).state())
    # A second batch with a document that does not exist: its part fails, and the summary
    # that depends on it is cancelled instead of running on partial results.
    bad_parts, bad_summary = fan_out_fan_in([1, 2, 99])

    with worker("tasks:app", dsn, schema, "-q", "docs", "-c", "4"):
        print("fan-in:", app.job(summary).result(timeout=60))
        try:
            app.job(bad_summary).result(timeout=60)
        except JobCancelled as exc:
            print(f"second summary: {exc.state} ({exc.kind}): {exc.error_message}")
        states = [app.job(p).state() for p in bad_parts]
        print("second batch parts:", ", ".join(states))
    app.close()


if __name__ == "__main__":
    main()
