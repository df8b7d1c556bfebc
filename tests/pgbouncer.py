"""A throwaway pgbouncer in front of the test PostgreSQL, for tests of pgqueue behind it.

Debian's pgbouncer (1.18: no protocol-level prepared statements), installed by .ci/run.
It refuses to run as root, so as root it runs as the ``postgres`` user (runuser); its
files live in a temporary directory that user may write. It listens on a free loopback
port and forwards every database to the server of ``target_dsn`` (a TCP host or a
unix-socket directory, which is made traversable for it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from psycopg.conninfo import conninfo_to_dict, make_conninfo

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def available() -> bool:
    return os.path.exists(PGBOUNCER)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgBouncer:
    """``with PgBouncer(dsn, mode="transaction") as bouncer: bouncer.dsn ...``"""

    def __init__(
        self,
        target_dsn: str,
        mode: str = "transaction",
        pool_size: int = 20,
        max_client_conn: int = 1000,
        extra: str = "",
    ) -> None:
        self.target = conninfo_to_dict(target_dsn)
        self.mode = mode
        self.pool_size = pool_size
        self.max_client_conn = max_client_conn
        self.extra = extra
        self.port = _free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="pgqbouncer"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def user(self) -> str:
        return str(self.target.get("user") or "postgres")

    @property
    def dbname(self) -> str:
        return str(self.target.get("dbname") or "postgres")

    @property
    def dsn(self) -> str:
        """A DSN of the target database, through pgbouncer."""
        return make_conninfo(
            host="127.0.0.1", port=str(self.port), user=self.user, dbname=self.dbname
        )

    def _config(self) -> str:
        host = str(self.target.get("host") or "127.0.0.1")
        port = str(self.target.get("port") or "5432")
        if host.startswith("/"):
            # A unix-socket directory (the embedded server's is a private temp dir).
            with contextlib.suppress(OSError):
                os.chmod(host, 0o711)
        users = self.dir / "users.txt"
        users.write_text(f'"{self.target.get("user") or "postgres"}" ""\n')
        return (
            "[databases]\n"
            f"* = host={host} port={port}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {users}\n"
            f"pool_mode = {self.mode}\n"
            f"max_client_conn = {self.max_client_conn}\n"
            f"default_pool_size = {self.pool_size}\n"
            "max_db_connections = 0\n"
            f"logfile = {self.dir / 'pgbouncer.log'}\n"
            "log_connections = 0\n"
            "log_disconnections = 0\n"
            f"{self.extra}\n"
        )

    def start(self, timeout: float = 15) -> None:
        ini = self.dir / "pgbouncer.ini"
        ini.write_text(self._config())
        cmd = [PGBOUNCER, str(ini)]
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
            for f in self.dir.iterdir():
                shutil.chown(f, "postgres")
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pgbouncer exited: {self.log_tail()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                return
            time.sleep(0.05)
        raise RuntimeError(f"pgbouncer did not listen within {timeout}s: {self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        path = self.dir / "pgbouncer.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            # runuser passes SIGTERM on; pgbouncer's SIGINT is a "safe shutdown" that
            # waits for clients, SIGTERM closes at once.
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PgBouncer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
