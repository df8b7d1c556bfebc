"""What every example's run.py does around its own part: the DSN and schema, migrate,
and a `pgqueue work` child process that is always stopped."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

from pgqueue import App
from pgqueue.migrate import upgrade


def app_settings() -> tuple[str, str]:
    """(DSN, schema): PGQUEUE_DSN (else the embedded server) and PGQUEUE_SCHEMA."""
    app = App()  # resolves the DSN the way every pgqueue command does
    try:
        return app.dsn, app.schema
    finally:
        app.close()


def migrate(dsn: str, schema: str) -> None:
    before, after = upgrade(dsn, schema)
    print(f"schema {schema}: {before or 'new'} -> {after}")


@contextlib.contextmanager
def worker(
    app_path: str, dsn: str, schema: str, *options: str
) -> Iterator[subprocess.Popen[bytes]]:
    """`pgqueue --app APP work` in a child process, stopped with SIGTERM at the end."""
    cmd = [sys.executable, "-m", "pgqueue.cli", "--dsn", dsn, "--schema", schema,
           "--app", app_path, "work", "--log-level", "warning", *options]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(cmd, env=env)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
