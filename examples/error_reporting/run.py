"""Failure hooks: every failed attempt, and the dead letter, reported to your code."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from _runner import app_settings, migrate, worker  # noqa: E402


def main() -> None:
    dsn, schema = app_settings()
    migrate(dsn, schema)
    from tasks import app, charge

    from pgqueue import JobFailed

    job = charge.defer(42)
    with worker("tasks:app", dsn, schema, "-q", "payments"):
        try:
            job.result(timeout=60)
        except JobFailed as exc:
            print(f"job.result(): {type(exc).__name__}: {exc.error_message}")
    app.close()


if __name__ == "__main__":
    main()
