"""Enqueue inside your own psycopg transaction; a rollback leaves no job behind."""

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
    from tasks import app, send_confirmation

    with psycopg.connect(dsn) as conn:  # the application's own connection
        conn.execute("CREATE TABLE IF NOT EXISTS example_orders (id int PRIMARY KEY, email text)")
        conn.execute("DELETE FROM example_orders")
        conn.commit()
        # 1. order and job commit together
        with conn.transaction():
            conn.execute("INSERT INTO example_orders VALUES (1, 'ada@example.com')")
            job = send_confirmation.options(connection=conn).defer(1, "ada@example.com")
        # 2. a rollback takes the job with it
        try:
            with conn.transaction():
                conn.execute("INSERT INTO example_orders VALUES (2, 'bob@example.com')")
                send_confirmation.options(connection=conn).defer(2, "bob@example.com")
                raise RuntimeError("payment declined")
        except RuntimeError as exc:
            print(f"order 2 rolled back ({exc})")
        count = conn.execute(
            f'SELECT count(*) FROM "{schema}".jobs WHERE task = %s', (send_confirmation.name,)
        ).fetchone()
        print(f"jobs for send_confirmation after the rollback: {count[0] if count else '?'}")

    with worker("tasks:app", dsn, schema, "-q", "emails"):
        print("result:", job.result(timeout=60))
    app.close()


if __name__ == "__main__":
    main()
