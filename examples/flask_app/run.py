"""Flask: enqueue in the request's transaction on the app's own psycopg pool; a request
that fails leaves no job."""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from _runner import app_settings, migrate, worker  # noqa: E402


def main() -> None:
    dsn, schema = app_settings()
    os.environ.update(PGQUEUE_DSN=dsn, PGQUEUE_SCHEMA=schema)
    migrate(dsn, schema)
    from tasks import app
    from web import pool, web

    pool.open()
    with pool.connection() as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS example_flask_signups (id serial PRIMARY KEY, email text)"
        )
    client = web.test_client()
    ok = client.post("/signups", json={"email": "ada@example.com"})
    print("POST /signups ada:", ok.status_code)
    bad = client.post("/signups", json={"email": "not-an-address"})
    print("POST /signups not-an-address:", bad.status_code)
    with pool.connection() as conn:
        row = conn.execute(
            "SELECT count(*) FROM example_flask_signups WHERE email = 'not-an-address'"
        ).fetchone()
        left = conn.execute(
            f'SELECT count(*) FROM "{schema}".jobs WHERE task = %s', ("tasks.send_welcome",)
        ).fetchone()
    print(f"rows for the bad request: {row[0] if row else '?'}; jobs: {left[0] if left else '?'}")
    job_id = ok.get_json()["job"]
    print("GET /jobs/<id>:", client.get(f"/jobs/{job_id}").get_json()["state"])

    with worker("tasks:app", dsn, schema, "-q", "welcome"):
        print("result:", app.job(job_id).result(timeout=60))
    print("GET /jobs/<id>:", client.get(f"/jobs/{job_id}").get_json()["state"])
    pool.close()
    app.close()


if __name__ == "__main__":
    main()
