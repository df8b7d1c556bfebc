"""Fixtures for the dashboard tests: a live dashboard (uvicorn in a thread, on a free port
of 127.0.0.1) over the test's schema, and helpers to put jobs in any state by SQL."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn
from starlette.types import ASGIApp

from pgqueue import App
from pgqueue.dashboard import Auth, create_app
from tests.helpers import wait_until

TOKEN = "test-token-123456"
XSS = "<script>alert('pgq')</script>"


@dataclass
class Dashboard:
    """A running dashboard: its base URL and an App on the same schema."""

    url: str
    app: App
    auth: Auth

    def client(self, token: str | None = TOKEN) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def csrf(self, who: str = "token") -> str:
        return self.auth.csrf_token(who)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Servers:
    """ASGI apps served by uvicorn in threads on free ports; ``close`` stops them all."""

    def __init__(self) -> None:
        self.running: list[tuple[uvicorn.Server, threading.Thread]] = []
        self.apps: list[App] = []

    def run(self, asgi: ASGIApp) -> str:
        """Serve ``asgi`` on 127.0.0.1; its base URL once it listens."""
        port = _free_port()
        server = uvicorn.Server(
            uvicorn.Config(asgi, host="127.0.0.1", port=port, log_config=None, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True, name=f"dashboard-{port}")
        thread.start()
        self.running.append((server, thread))
        wait_until(lambda: server.started, timeout=15, what="the dashboard listening")
        return f"http://127.0.0.1:{port}"

    def close(self) -> None:
        for server, thread in self.running:
            server.should_exit = True
            thread.join(10)
        for app in self.apps:
            app.close()


@pytest.fixture
def servers() -> Iterator[Servers]:
    s = Servers()
    yield s
    s.close()


@pytest.fixture
def serve(pg_dsn: str, schema: str, servers: Servers) -> Callable[..., Dashboard]:
    """``serve(actions=..., auth=...)``: start a dashboard; all are stopped at the end."""

    def start(actions: bool = True, auth: Auth | None = None) -> Dashboard:
        auth = Auth(token=TOKEN) if auth is None else auth
        app = App(pg_dsn, schema=schema, strict_tasks=False)
        servers.apps.append(app)
        url = servers.run(create_app(app, actions=actions, auth=auth))
        return Dashboard(url, app, auth)

    return start


@pytest.fixture
def dashboard(serve: Callable[..., Dashboard]) -> Dashboard:
    """A dashboard with actions on and a token."""
    return serve()


def fail_job(conn: psycopg.Connection[Any], schema: str, job_id: int, message: str,
             traceback: str = "Traceback ...", kind: str = "error") -> None:  # fmt: skip
    """Make a job failed (a dead letter) with one error, as a worker would leave it."""
    error = [{"attempt": 1, "kind": kind, "type": "builtins.RuntimeError", "message": message,
              "traceback": traceback, "at": "2026-12-05T10:00:00+00:00"}]  # fmt: skip
    conn.execute(
        f'UPDATE "{schema}".jobs SET state = %s, attempt = 1, error_count = 1, errors = %s, '
        "finished_at = now() WHERE id = %s",
        ("failed", json.dumps(error), job_id),
    )


def succeed_job(conn: psycopg.Connection[Any], schema: str, job_id: int, result: Any) -> None:
    """Move a job to succeeded_jobs with a result, as a worker's completion does."""
    cols = (
        "id, queue, task, args, kwargs, state, priority, run_at, attempt, max_attempts, "
        "error_count, lost_count, lease_expires_at, worker_id, dedupe_key, errors, result, "
        "created_at, started_at, finished_at, cancel_requested_at, group_key, depends_on"
    )
    select = (
        cols.replace("state,", "%s,")
        .replace("result,", "%s::jsonb,")
        .replace("finished_at,", "now(),")
    )
    conn.execute(
        f'WITH moved AS (DELETE FROM "{schema}".jobs WHERE id = %s RETURNING *) '
        f'INSERT INTO "{schema}".succeeded_jobs ({cols}) '
        f"SELECT {select} FROM moved",
        (job_id, "succeeded", json.dumps(result)),
    )
    conn.execute(
        f"UPDATE \"{schema}\".succeeded_jobs SET started_at = run_at + interval '1 second', "
        "finished_at = now(), attempt = 1 WHERE id = %s",
        (job_id,),
    )
