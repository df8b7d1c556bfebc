"""A streaming standby of a :class:`~tests.pgcluster.PgCluster`, for failover crash tests.

``Standby(primary, datadir).init()`` copies the running primary with ``pg_basebackup -R``
(the copy starts as a hot standby streaming from it); :meth:`Standby.make_synchronous`
makes the primary wait for it on every commit (``synchronous_standby_names``), and
:meth:`Standby.promote` turns it into a primary (``pg_ctl promote``).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import psycopg

from tests.pgcluster import _MAX_SOCKET_DIR_LEN, PgCluster, _free_port


class Standby(PgCluster):
    """A hot standby of ``primary`` in ``datadir``: :meth:`init` once, then :meth:`start`."""

    def __init__(self, primary: PgCluster, datadir: Path) -> None:
        super().__init__(datadir, bin_dir=primary.bin_dir)
        self.primary = primary

    def init(self) -> None:
        """``pg_basebackup -R -X stream`` of the running primary, then this server's own
        port, socket directory and cluster_name (its name as a standby: the walreceiver's
        application_name). RuntimeError with pg_basebackup's output if the copy fails."""
        self._ensure_binaries_readable()
        self.datadir.mkdir(mode=0o700, parents=True, exist_ok=False)
        self._give_to_user(self.datadir)
        code, out = self._run(
            "pg_basebackup",
            *("-D", str(self.datadir), "-h", "127.0.0.1", "-p", str(self.primary.port)),
            *("-U", "postgres", "-R", "-X", "stream", "-c", "fast"),
        )
        if code != 0:
            raise RuntimeError(f"pg_basebackup failed (exit {code}):\n{out}")
        self.port = _free_port()
        self.cluster_name = f"pgstandby_{os.getpid()}_{self.port}"
        if len(str(self.datadir)) > _MAX_SOCKET_DIR_LEN:
            self.socket_dir, self._own_socket_dir = Path(tempfile.mkdtemp(prefix="pgqs")), True
            self._give_to_user(self.socket_dir)
        if self.logfile.exists():
            with self.logfile.open("w"):
                pass  # the primary's log came along with the copy
        settings = {
            "port": str(self.port),
            "unix_socket_directories": f"'{self.socket_dir}'",
            "cluster_name": f"'{self.cluster_name}'",
            "hot_standby": "on",
        }
        with (self.datadir / "postgresql.conf").open("a") as f:  # the last setting wins
            f.write("\n# Standby\n" + "".join(f"{k} = {v}\n" for k, v in settings.items()))

    def make_synchronous(self, timeout: float = 30) -> None:
        """Make every commit on the primary wait until this standby has flushed it
        (``synchronous_standby_names``, ``synchronous_commit = on``); return once the
        primary reports it streaming as its synchronous standby. RuntimeError on timeout."""
        with psycopg.connect(self.primary.dsn, autocommit=True) as conn:
            conn.execute(f"ALTER SYSTEM SET synchronous_standby_names = '\"{self.cluster_name}\"'")
            conn.execute("ALTER SYSTEM SET synchronous_commit = 'on'")
            conn.execute("SELECT pg_reload_conf()")
            deadline = time.monotonic() + timeout
            sql = "SELECT state, sync_state FROM pg_stat_replication WHERE application_name = %s"
            while (row := conn.execute(sql, (self.cluster_name,)).fetchone()) != (
                "streaming",
                "sync",
            ):
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"standby {self.cluster_name} not synchronous after {timeout}s: {row}\n"
                        f"--- tail of {self.logfile} ---\n{self.log_tail()}"
                    )
                time.sleep(0.05)

    def promote(self, timeout: float = 30) -> None:
        """``pg_ctl promote -w``: returns once this server accepts writes. RuntimeError with
        the log tail if it does not within ``timeout`` seconds."""
        code, out = self._pg_ctl("promote", timeout=timeout)
        if code != 0:
            raise RuntimeError(
                f"pg_ctl promote failed (exit {code}):\n{out}\n"
                f"--- tail of {self.logfile} ---\n{self.log_tail()}"
            )
