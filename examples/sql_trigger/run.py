"""Rows inserted by plain SQL become jobs through a trigger; a worker runs them."""

from __future__ import annotations

import sys
from pathlib import Path

import psycopg

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from _runner import app_settings, migrate, worker  # noqa: E402


def main() -> None:
    dsn, schema = app_settings()
    migrate(dsn, schema)
    from tasks import app

    ddl = (HERE / "schema.sql").read_text().replace("{schema}", schema)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(ddl)
        conn.execute("TRUNCATE example_signups")
        rows = conn.execute(
            "INSERT INTO example_signups (email) VALUES ('ada@example.com'), "
            "('grace@example.com') RETURNING id"
        ).fetchall()
        print(f"inserted {len(rows)} signups")
        ids = [
            r[0]
            for r in conn.execute(
                f"SELECT id FROM \"{schema}\".jobs WHERE task = 'welcome.send' ORDER BY id"
            ).fetchall()
        ]
    with worker("tasks:app", dsn, schema, "-q", "emails"):
        for job_id in ids:
            print("result:", app.job(job_id).result(timeout=60))
    app.close()


if __name__ == "__main__":
    main()
