"""The dashboard over HTTP (a live server, a real PostgreSQL): every page, escaping,
keyset pagination and its plan, authentication, CSRF, the actions and their log."""

from __future__ import annotations

import json
import logging
import re
import socket
from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import pytest
from click.testing import CliRunner

from pgqueue import App, JobSpec
from pgqueue.cli.root import cli
from pgqueue.dashboard import Auth, create_app
from pgqueue.errors import ConfigurationError, InvalidJobError
from tests.dashboard.conftest import TOKEN, XSS, Dashboard, Servers, fail_job, succeed_job
from tests.helpers import generic_plan

Conn = psycopg.Connection[Any]
PAGES = ["/", "/api/overview", "/jobs", "/dead", "/workers", "/periodic", "/queues/default"]


def test_read_only_without_credentials(serve: Callable[..., Dashboard]) -> None:
    """No credentials: every page answers, no action form is shown, a POST is refused."""
    d = serve(actions=False, auth=Auth())
    job_id = d.app.enqueue("emails.send", ["a@b.c"])
    with d.client(token=None) as http:
        for path in [*PAGES, f"/jobs/{job_id}"]:
            page = http.get(path)
            assert page.status_code == 200, (path, page.text[:500])
            assert page.headers["content-security-policy"].startswith("default-src 'self'")
        html = http.get(f"/jobs/{job_id}").text
        assert "read-only" in html and 'id="job-cancel"' not in html
        refused = http.post("/actions/jobs", data={"do": "cancel:selected", "id": job_id})
        assert refused.status_code == 403 and "actions are off" in refused.text
    assert d.app.admin.job(job_id)["state"] == "queued"


def test_actions_without_credentials_refuse_to_start(pg_dsn: str, schema: str) -> None:
    with pytest.raises(ConfigurationError, match="PGQUEUE_DASHBOARD_TOKEN"):
        create_app(dsn=pg_dsn, schema=schema, actions=True, auth=Auth())
    env = {k: None for k in ("PGQUEUE_DASHBOARD_TOKEN", "PGQUEUE_DASHBOARD_USER",
                             "PGQUEUE_DASHBOARD_PASSWORD", "PGQUEUE_APP")}  # fmt: skip
    result = CliRunner(env=env).invoke(
        cli, ["--dsn", pg_dsn, "--schema", schema, "dashboard", "--actions"]
    )
    assert result.exit_code == 2, result.output
    assert "actions need credentials" in result.output
    with pytest.raises(ConfigurationError, match="needs both"):
        Auth.from_env({"PGQUEUE_DASHBOARD_USER": "ops"})


def test_every_value_is_escaped(dashboard: Dashboard, conn: Conn, schema: str) -> None:
    """<script> in args, kwargs, an error's message and traceback, the result, the dedupe
    and group keys, a worker's id and host, a periodic schedule's name: shown as text on
    every page, never as markup. A task or queue name cannot hold it at all: the schema
    refuses it (enqueue says so and writes nothing)."""
    app = dashboard.app
    with pytest.raises(InvalidJobError):
        app.enqueue(XSS, [])
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(f'INSERT INTO "{schema}".jobs (task) VALUES (%s)', (XSS,))
    failed = app.enqueue("evil.task", [XSS], {"k": XSS}, dedupe_key=XSS)
    fail_job(conn, schema, failed, message=XSS, traceback=f"File {XSS}\n  raise")
    done = app.enqueue("evil.task", [XSS])
    succeed_job(conn, schema, done, {"out": XSS})
    conn.execute(f'UPDATE "{schema}".jobs SET group_key = %s WHERE id = %s', (XSS, failed))
    conn.execute(
        f'INSERT INTO "{schema}".workers (id, host, pid, queues, concurrency) '
        "VALUES (%s, %s, 1, ARRAY['default'], 1)",
        (XSS, XSS),
    )
    conn.execute(
        f'INSERT INTO "{schema}".periodic (name, schedule, last_tick) VALUES (%s, %s, now())',
        (XSS, "every 60s"),
    )
    with dashboard.client() as http:
        for path in [*PAGES, f"/jobs/{failed}", f"/jobs/{done}", "/jobs?search=script"]:
            page = http.get(path)
            assert page.status_code == 200, (path, page.text[:500])
            assert "<script>alert" not in page.text, path
        job_page = http.get(f"/jobs/{failed}").text
        assert "&lt;script&gt;alert(&#39;pgq&#39;)&lt;/script&gt;" in job_page
        assert job_page.count("&lt;script&gt;") >= 5  # args, kwargs, message, traceback, keys
        assert "&lt;script&gt;" in http.get("/workers").text
        assert "&lt;script&gt;" in http.get("/periodic").text
        assert "&lt;script&gt;" in http.get("/dead").text
        api = http.get("/api/overview")
        assert api.headers["content-type"] == "application/json"


def test_keyset_pages_walk_both_tables_without_gaps(
    dashboard: Dashboard, conn: Conn, schema: str
) -> None:
    """Newest first, page after page (?before=<last id>), over jobs and succeeded_jobs
    together: every job once, in id order; filters narrow it."""
    app = dashboard.app
    ids = [app.enqueue("t.a" if i % 3 else "t.b", [i], queue="q1" if i % 2 else "q2")
           for i in range(130)]  # fmt: skip
    for i in ids[::4]:
        succeed_job(conn, schema, i, i)
    fail_job(conn, schema, ids[7], "boom")
    seen: list[int] = []
    url = "/jobs?size=20"
    with dashboard.client() as http:
        while url:
            html = http.get(url).text
            seen += [int(x) for x in re.findall(r'<tr class="state-\w+" data-id="(\d+)"', html)]
            more = re.search(r'href="(/jobs\?[^"]*before=\d+[^"]*)" id="next-page"', html)
            url = more.group(1).replace("&amp;", "&") if more else ""
        assert seen == sorted(ids, reverse=True)

        def listed(query: str) -> list[int]:
            html = http.get("/jobs?size=200&" + query).text
            return [int(x) for x in re.findall(r'data-id="(\d+)"', html)]

        assert listed("state=succeeded") == sorted(ids[::4], reverse=True)
        assert listed("state=failed") == [ids[7]]
        assert listed("queue=q1&task=t.b") == [
            j for n, j in sorted(enumerate(ids), key=lambda p: -p[1]) if n % 2 and not n % 3
        ]
        assert listed("search=129") == [ids[129]]
        assert listed("until=2000-01-01T00:00") == []
        assert len(listed("since=2000-01-01T00:00")) == 130
        bad = http.get("/jobs?state=sleeping")
        assert bad.status_code == 400 and "unknown state" in bad.text


def test_job_page_query_walks_the_primary_keys(conn: Conn, schema: str, pg_dsn: str) -> None:
    """On a realistic table (most jobs in the history), the plan a prepared statement gets
    (generic): each branch an index scan backward on its primary key under a LIMIT, for
    the first page and a deep one alike; no sequential scan, no sort of a table."""
    from pgqueue.sql import query

    app = App(pg_dsn, schema=schema, strict_tasks=False)
    try:
        app.enqueue_many([JobSpec("t.noop", [i], queue=f"q{i % 3}") for i in range(20000)])
    finally:
        app.close()
    cols = ", ".join(c for c in COLUMNS.split(", "))
    conn.execute(
        f'WITH moved AS (DELETE FROM "{schema}".jobs WHERE id % 10 <> 0 RETURNING *) '
        f'INSERT INTO "{schema}".succeeded_jobs ({cols}) SELECT '
        + cols.replace("finished_at", "now()").replace("state,", "'succeeded',")
        + " FROM moved"
    )
    conn.execute(f'ANALYZE "{schema}".jobs')
    conn.execute(f'ANALYZE "{schema}".succeeded_jobs')
    # parameters in order of appearance: state, before, scheduled, queue, task, since,
    # until, search, limit
    for before in ("NULL", "1000"):
        for queue in ("NULL", "'q1'"):
            plan = generic_plan(
                conn,
                query(schema, "job_page"),
                f"NULL, {before}, NULL, {queue}, NULL, NULL, NULL, NULL, 51",
            )
            assert "Seq Scan" not in plan, plan
            assert "Index Scan Backward using jobs_pkey" in plan, plan
            assert "Index Scan Backward using succeeded_jobs_pkey" in plan, plan


COLUMNS = (
    "id, queue, task, args, kwargs, state, priority, run_at, attempt, max_attempts, "
    "error_count, lost_count, lease_expires_at, worker_id, dedupe_key, errors, result, "
    "created_at, started_at, finished_at, cancel_requested_at, group_key, depends_on"
)


def test_credentials_and_login(serve: Callable[..., Dashboard]) -> None:
    """With credentials every page needs them: a browser is sent to the login page, a
    script gets 401; Bearer, basic auth and the login form's cookie all work."""
    d = serve(auth=Auth(token=TOKEN, user="ops", password="pass-word-1"))
    with d.client(token=None) as http:
        first = http.get("/jobs", follow_redirects=False)
        assert first.status_code == 303 and first.headers["location"] == "/login?next=%2Fjobs"
        assert http.get("/api/overview").status_code == 401
        assert http.get("/", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert http.get("/", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert http.get("/", auth=("ops", "pass-word-1")).status_code == 200
        assert http.get("/", auth=("ops", "nope")).status_code == 401
        assert http.post("/login", data={"user": "ops", "password": "x"}).status_code == 401
        ok = http.post("/login", data={"user": "ops", "password": "pass-word-1",
                                       "next": "/workers"}, follow_redirects=False)  # fmt: skip
        assert ok.status_code == 303 and ok.headers["location"] == "/workers"
        assert "samesite=strict" in ok.headers["set-cookie"].lower()
        assert "httponly" in ok.headers["set-cookie"].lower()
        assert http.get("/workers").status_code == 200  # the cookie
        evil = {"user": "ops", "password": "pass-word-1", "next": "//evil.example/"}
        away = http.post("/login", data=evil, follow_redirects=False)
        assert away.headers["location"] == "/"


def _post(http: Any, path: str, **fields: Any) -> Any:
    return http.post(path, data=fields)


def test_actions_need_csrf_confirm_and_are_logged(
    dashboard: Dashboard, conn: Conn, schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = dashboard.app
    job = app.enqueue("t.x", [1])
    fail_job(conn, schema, job, "boom")
    caplog.set_level(logging.INFO, logger="pgqueue.dashboard")
    with dashboard.client() as http:
        no_token = _post(http, "/actions/jobs", do="retry:selected", id=job, confirm="yes")
        assert no_token.status_code == 403 and "CSRF" in no_token.text
        forged = _post(http, "/actions/jobs", do="retry:selected", id=job, confirm="yes",
                       csrf=dashboard.auth.csrf_token("someone else"))  # fmt: skip
        assert forged.status_code == 403
        cross = http.post("/actions/jobs", headers={"Origin": "http://evil.example"},
                          data={"do": "retry:selected", "id": job, "csrf": dashboard.csrf(),
                                "confirm": "yes"})  # fmt: skip
        assert cross.status_code == 403 and "another site" in cross.text
        assert app.admin.job(job)["state"] == "failed"
        ask = _post(http, "/actions/jobs", do="retry:selected", id=job, csrf=dashboard.csrf())
        assert ask.status_code == 200 and 'id="confirm"' in ask.text
        assert app.admin.job(job)["state"] == "failed"  # only asked
        done = _post(http, "/actions/jobs", action="retry", id=job, csrf=dashboard.csrf(),
                     confirm="yes")  # fmt: skip
        assert done.status_code == 200 and "retried" in done.text
    assert app.admin.job(job)["state"] == "queued"
    assert f"dashboard action by token from 127.0.0.1: retry 1 job(s) {job}" in caplog.text


def test_bulk_actions_on_the_filter_and_dead_letter_groups(
    dashboard: Dashboard, conn: Conn, schema: str
) -> None:
    app = dashboard.app
    queued = [app.enqueue("t.q", [i], queue="bulk") for i in range(5)]
    other = app.enqueue("t.q", [99], queue="other")
    dead = [app.enqueue("t.d", [i]) for i in range(4)]
    for n, j in enumerate(dead):
        fail_job(conn, schema, j, f"ValueError: bad input\nline {n}" if n < 3 else "timeout")
    csrf = dashboard.csrf()
    with dashboard.client() as http:
        ask = _post(http, "/actions/jobs", do="cancel:filter", queue="bulk", csrf=csrf)
        assert "Cancel 5 jobs?" in ask.text
        ids = [int(x) for x in re.findall(r'name="id" value="(\d+)"', ask.text)]
        assert sorted(ids) == queued
        _post(http, "/actions/jobs", action="cancel", id=ids, csrf=csrf, confirm="yes")
        assert {app.admin.job(j)["state"] for j in queued} == {"cancelled"}
        assert app.admin.job(other)["state"] == "queued"

        groups = http.get("/dead").text
        assert groups.count('class="retry-group"') == 2
        group = {"queue": "default", "task": "t.d", "kind": "error",
                 "message": "ValueError: bad input"}  # fmt: skip
        ask = _post(http, "/actions/dead", csrf=csrf, **group)
        assert "Retry 3 failed jobs?" in ask.text
        _post(http, "/actions/dead", csrf=csrf, confirm="yes", **group)
        assert [app.admin.job(j)["state"] for j in dead] == ["queued"] * 3 + ["failed"]

        # more ids than a form usually carries (Starlette's default limit is 1,000 fields)
        app.enqueue_many([JobSpec("t.m", [i], queue="many") for i in range(1500)])
        ask = _post(http, "/actions/jobs", do="cancel:filter", queue="many", csrf=csrf)
        assert "Cancel 1,500 jobs?" in ask.text
        many = [int(x) for x in re.findall(r'name="id" value="(\d+)"', ask.text)]
        done = _post(http, "/actions/jobs", action="cancel", id=many, csrf=csrf, confirm="yes")
        assert done.status_code == 200 and "cancel: 1500 jobs" in done.text

        deleted = _post(http, "/actions/jobs", action="delete", id=[dead[3], other],
                        csrf=csrf, confirm="yes")  # fmt: skip
        assert "deleted" in deleted.text and "queued" in deleted.text
        assert http.get(f"/jobs/{dead[3]}").status_code == 404
        assert app.admin.job(other)["state"] == "queued"  # unfinished: left alone


def test_queue_actions_go_through_admin(dashboard: Dashboard) -> None:
    app = dashboard.app
    app.enqueue("t.x", [], queue="mail")
    csrf = dashboard.csrf()
    with dashboard.client() as http:
        _post(http, "/actions/queues", queue="mail", action="pause", csrf=csrf)
        assert {q["queue"]: q["paused"] for q in app.admin.queues()}["mail"] is True
        assert "paused" in http.get("/queues/mail").text
        _post(http, "/actions/queues", queue="mail", action="resume", csrf=csrf)
        assert {q["queue"]: q["paused"] for q in app.admin.queues()}["mail"] is False
        limits = {"max_running": "4", "max_running_per_group": "", "rate_limit": "10",
                  "rate_period": "1", "priority_aging": ""}  # fmt: skip
        _post(http, "/actions/queues", queue="mail", action="limits", csrf=csrf, **limits)
        mail = {q["queue"]: q for q in app.admin.queues()}["mail"]
        assert (mail["max_running"], mail["rate_limit"]) == (4, 10)
        bad = _post(http, "/actions/queues", queue="mail", action="limits", csrf=csrf,
                    **{**limits, "max_running": "many"})  # fmt: skip
        assert bad.status_code == 400 and "max_running must be a whole number" in bad.text
        half = _post(http, "/actions/queues", queue="mail", action="limits", csrf=csrf,
                     **{**limits, "rate_period": ""})  # fmt: skip
        assert half.status_code == 400 and "go together" in half.text
        assert {q["queue"]: q for q in app.admin.queues()}["mail"]["max_running"] == 4
        api = json.loads(http.get("/api/overview?queue=mail").text)
        assert api["queues"][0]["limits"] == "max running 4, rate 10/1s"
        assert len(api["history"]) == 60


def test_mounted_under_a_prefix(pg_dsn: str, schema: str, servers: Servers) -> None:
    """Inside another Starlette (or FastAPI) app at /ops/queue: links carry the prefix."""
    from starlette.applications import Starlette
    from starlette.routing import Mount

    app = App(pg_dsn, schema=schema, strict_tasks=False)
    servers.apps.append(app)
    outer = Starlette(routes=[Mount("/ops/queue", create_app(app, auth=Auth()))])
    with httpx.Client(base_url=servers.run(outer)) as http:
        page = http.get("/ops/queue/jobs")
        assert page.status_code == 200
        assert 'href="/ops/queue/static/dashboard.css"' in page.text
        assert 'href="/ops/queue/workers"' in page.text
        assert http.get("/ops/queue/static/uPlot.iife.min.js").status_code == 200
        assert http.get("/ops/queue/api/overview").status_code == 200


def test_delete_job_from_cli_sql_and_an_operator_role(
    dashboard: Dashboard, conn: Conn, schema: str, pg_dsn: str, make_role: Callable[..., str]
) -> None:
    """delete_job: finished jobs only, through `pgqueue jobs delete`, SQL, or an operator
    role (which has no DELETE on the tables: the function runs as its owner)."""
    app = dashboard.app
    done, failed, queued = (app.enqueue("t.x", [i]) for i in range(3))
    succeed_job(conn, schema, done, None)
    fail_job(conn, schema, failed, "boom")
    env = dict.fromkeys(("PGQUEUE_DSN", "DATABASE_URL", "PGQUEUE_SCHEMA", "PGQUEUE_APP"))
    out = CliRunner(env=env).invoke(
        cli, ["--dsn", pg_dsn, "--schema", schema, "jobs", "delete", str(done), str(queued)]
    )
    assert out.exit_code == 0, out.output
    assert re.search(rf"{done}\s+deleted", out.output)
    assert re.search(rf"{queued}\s+queued\s+queued: not finished", out.output)
    missing = CliRunner(env=env).invoke(
        cli, ["--dsn", pg_dsn, "--schema", schema, "jobs", "delete", "999999"]
    )
    assert missing.exit_code == 1 and "no job with id 999999" in missing.output
    operator = App(make_role("operator"), schema=schema)
    try:
        assert operator.admin.delete([failed]) == {failed: "deleted"}
    finally:
        operator.close()
    assert conn.execute(f'SELECT "{schema}".delete_job(%s)', (queued,)).fetchone() == ("queued",)
    assert conn.execute(f'SELECT "{schema}".delete_job(%s)', (123456,)).fetchone() == (None,)


def test_the_cli_serves_on_127_0_0_1(pg_dsn: str, schema: str) -> None:
    """`pgqueue dashboard` as users start it: on 127.0.0.1 by default, pages need the token."""
    import os
    import subprocess
    import sys

    from tests.dashboard.conftest import _free_port
    from tests.helpers import wait_until

    port = _free_port()
    env = {**os.environ, "PGQUEUE_DASHBOARD_TOKEN": TOKEN, "PGQUEUE_DSN": pg_dsn,
           "PGQUEUE_SCHEMA": schema}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "pgqueue.cli", "dashboard", "--port", str(port), "--actions"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:

        def answers() -> int:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/api/overview", timeout=2).status_code
            except httpx.TransportError:
                return 0

        assert wait_until(answers, timeout=30, what="the dashboard answering") == 401
        ok = httpx.get(f"http://127.0.0.1:{port}/api/overview",
                       headers={"Authorization": f"Bearer {TOKEN}"})  # fmt: skip
        assert ok.status_code == 200 and ok.json()["queues"] == []
        with socket.socket() as s:  # not on the machine's other addresses
            assert s.connect_ex((_outside_address(), port)) != 0
    finally:
        proc.terminate()
        out = proc.communicate(timeout=15)[0].decode()
    assert f"pgqueue dashboard on http://127.0.0.1:{port}/ (actions on)" in out


def _outside_address() -> str:
    """An address of this machine other than loopback (or one that cannot answer)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET: no packet is sent
            return str(s.getsockname()[0])
        except OSError:
            return "192.0.2.1"


def test_a_filter_that_reads_too_long_says_so(
    dashboard: Dashboard, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A search that would read the history for longer than the page allows ends with a
    message to narrow it (the statement timeout, 5 s by default; 1 ms here)."""
    from pgqueue.dashboard import data

    dashboard.app.enqueue_many([JobSpec("t.s", [f"text {i}"]) for i in range(30000)])
    monkeypatch.setattr(data, "PAGE_TIMEOUT_MS", 1)
    with dashboard.client() as http:
        slow = http.get("/jobs?search=nowhere-to-be-found")
        assert slow.status_code == 400
        assert "narrow it" in slow.text and "Traceback" not in slow.text
        assert http.get("/jobs/1").status_code == 200  # the pool's connection is fine after it
