"""A server that accepts TCP and never answers: every path gives up after the connect
timeout with one line naming the server and the fix, instead of hanging for minutes.

The "server" is a listening socket this test owns that never accepts or reads (the kernel
completes the handshake; libpq then waits for an answer that never comes). The CLI runs as
real processes with ``connect_timeout=2`` in the DSN; the library paths use a DSN without
one and pgqueue's default lowered to 2 s, which proves the default is added on that path
(psycopg's own fallback would wait 130 s, past every deadline here)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import threading
from collections.abc import Iterator

import pytest

import pgqueue.db
from pgqueue import App, ConfigurationError
from pgqueue.done_listener import DoneListener
from pgqueue.listener import Listener
from pgqueue.worker import Worker, WorkerConfig
from pgqueue.worker.services import _why_no_pool
from tests.helpers import wait_until
from tests.integration.test_cli import ENV_VARS, PGQUEUE, assert_one_line_error

#: Deadline for anything that should give up after 2 s (generous: 2 cores, shared).
DEADLINE = 30


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections and never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


@pytest.fixture
def fast_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """pgqueue's default connect timeout, 2 s instead of 10, for DSNs that give none."""
    monkeypatch.delenv("PGCONNECT_TIMEOUT", raising=False)
    monkeypatch.setattr(pgqueue.db, "DEFAULT_CONNECT_TIMEOUT", 2)


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in (*ENV_VARS, "PGCONNECT_TIMEOUT")}
    return subprocess.run(
        [*PGQUEUE, *args],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        env={**base, **(env or {})},
        check=False,
    )


def assert_names_the_server(proc: subprocess.CompletedProcess[str], port: int, secs: int) -> None:
    assert_one_line_error(
        proc.returncode,
        proc.stdout,
        proc.stderr,
        says=f"cannot connect to PostgreSQL at 127.0.0.1:{port}: no answer within {secs} s",
    )
    assert "raise connect_timeout in the DSN" in proc.stderr


@pytest.mark.parametrize("command", [["status"], ["enqueue", "t"], ["migrate"]], ids=" ".join)
def test_cli_gives_up_after_connect_timeout(silent_port: int, command: list[str]) -> None:
    dsn = f"postgresql://postgres@127.0.0.1:{silent_port}/test?connect_timeout=2"
    assert_names_the_server(run("--dsn", dsn, *command), silent_port, 2)


def test_cli_honours_pgconnect_timeout(silent_port: int) -> None:
    dsn = f"host=127.0.0.1 port={silent_port} user=postgres dbname=test"
    proc = run("--dsn", dsn, "status", env={"PGCONNECT_TIMEOUT": "3"})
    assert_names_the_server(proc, silent_port, 3)


def test_app_sync_and_async(silent_port: int, fast_default: None) -> None:
    app = App(f"host=127.0.0.1 port={silent_port} user=postgres dbname=test", strict_tasks=False)
    try:
        with pytest.raises(ConfigurationError, match=f"127.0.0.1:{silent_port}: no answer"):
            app.enqueue("t")
        with pytest.raises(ConfigurationError, match=f"127.0.0.1:{silent_port}: no answer"):
            asyncio.run(app.enqueue_async("t"))
        with pytest.raises(ConfigurationError, match="no answer within 2 s"):
            app.migrate()
    finally:
        app.close()


def test_worker_start(silent_port: int, fast_default: None) -> None:
    app = App(f"postgresql://postgres@127.0.0.1:{silent_port}/test")

    @app.task
    def noop() -> None: ...

    worker = Worker(app, WorkerConfig())
    with pytest.raises(ConfigurationError, match=f"127.0.0.1:{silent_port}: no answer"):
        asyncio.run(worker.run())
    app.close()


def test_worker_pools_that_cannot_fill_name_the_cause(silent_port: int) -> None:
    dsn = f"postgresql://postgres@127.0.0.1:{silent_port}/test?connect_timeout=2"
    message = _why_no_pool(dsn)
    assert message.startswith("the worker's connection pool did not open within 30 s: ")
    assert f"127.0.0.1:{silent_port}: no answer within 2 s" in message


def test_listen_connections_give_up_and_retry(
    silent_port: int, fast_default: None, caplog: pytest.LogCaptureFixture
) -> None:
    """The worker's LISTEN connection and the results' one (job.result()) both time out,
    log it and retry, instead of waiting forever on their first connect."""
    dsn = f"postgresql://postgres@127.0.0.1:{silent_port}/test"
    caplog.set_level(logging.WARNING)

    async def listen() -> None:
        listener = Listener(dsn, "c", ["default"], lambda: None)
        task = asyncio.create_task(listener.run())
        try:
            while "LISTEN connection failed" not in caplog.text:
                await asyncio.sleep(0.05)
        finally:
            task.cancel()

    asyncio.run(asyncio.wait_for(listen(), DEADLINE))
    assert "timeout expired" in caplog.text

    done = DoneListener(dsn, "c_done")
    woken = threading.Event()
    unwatch = done.watch(1, woken.set)
    try:
        wait_until(
            lambda: "results LISTEN connection failed" in caplog.text,
            timeout=DEADLINE,
            what="the results listener's connect to time out",
        )
    finally:
        unwatch()
        done.close()


def test_a_refused_connection_is_one_line_too() -> None:
    with socket.socket() as s:  # a free port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = run("--dsn", f"postgresql://postgres@127.0.0.1:{port}/test", "status")
    assert_one_line_error(
        proc.returncode,
        proc.stdout,
        proc.stderr,
        says=f"cannot connect to PostgreSQL at 127.0.0.1:{port}: ",
    )
    assert "check the DSN" in proc.stderr
