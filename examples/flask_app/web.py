"""The Flask app: a signup and its welcome e-mail job in one transaction, on a connection
from the application's own psycopg pool; the job's state over HTTP."""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, abort, request
from psycopg_pool import ConnectionPool
from tasks import app, send_welcome

from pgqueue import JobNotFound

pool = ConnectionPool(os.environ["PGQUEUE_DSN"], min_size=1, max_size=4, open=False)
web = Flask(__name__)


@web.post("/signups")
def signup() -> tuple[dict[str, Any], int]:
    email = str((request.get_json(silent=True) or {}).get("email", ""))
    # pool.connection(): one transaction, committed on a clean exit, rolled back on an
    # exception (abort() raises one), so the signup and its job go together or not at all.
    with pool.connection() as conn:
        row = conn.execute(
            "INSERT INTO example_flask_signups (email) VALUES (%s) RETURNING id", (email,)
        ).fetchone()
        assert row is not None
        job = send_welcome.options(connection=conn).defer(row[0], email)
        if "@" not in email:
            abort(400, "not an e-mail address")
    return {"signup": row[0], "job": int(job)}, 201


@web.get("/jobs/<int:job_id>")
def job_state(job_id: int) -> dict[str, Any]:
    try:
        return {"job": job_id, "state": app.job(job_id).state()}
    except JobNotFound:
        abort(404)
