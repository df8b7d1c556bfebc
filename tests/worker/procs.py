"""Worker subprocesses for tests: start ``pgqueue work`` on tests.worker.sample_app, watch
its log, and always kill it (and any supervised children) at the end."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import psycopg

from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parent.parent.parent
APP = "tests.worker.sample_app:app"


def create_effects(conn: psycopg.Connection[Any], schema: str) -> None:
    """The table sample_app's handlers write one row per run into."""
    conn.execute(
        f'CREATE TABLE "{schema}".effects (job_id bigint NOT NULL, attempt int NOT NULL, '
        "worker_pid int NOT NULL, lease_lost bool NOT NULL, note text, "
        "at timestamptz NOT NULL DEFAULT clock_timestamp())"
    )


def job(conn: psycopg.Connection[Any], schema: str, job_id: int) -> dict[str, Any]:
    """The job's row as a dict (raises if it does not exist)."""
    cur = conn.execute(f'SELECT * FROM "{schema}".all_jobs WHERE id = %s', (job_id,))
    row = cur.fetchone()
    assert row is not None, f"no job {job_id}"
    assert cur.description is not None
    return dict(zip([c.name for c in cur.description], row, strict=False))


def effects(conn: psycopg.Connection[Any], schema: str, job_id: int) -> list[tuple[Any, ...]]:
    """(attempt, worker_pid, lease_lost) of each run of a job's handler, in order."""
    return conn.execute(
        f'SELECT attempt, worker_pid, lease_lost FROM "{schema}".effects WHERE job_id = %s '
        "ORDER BY at",
        (job_id,),
    ).fetchall()


def holder_pid(worker_id: str | None) -> int | None:
    """The pid in a worker id (``host:pid:suffix``)."""
    return None if worker_id is None else int(worker_id.split(":")[-2])


class WorkerProc:
    """One ``python -m pgqueue.cli --app sample_app work ...`` process (its own session, so
    that killing its process group also kills supervised children)."""

    def __init__(
        self,
        dsn: str,
        schema: str,
        args: list[str],
        name: str,
        logdir: Path,
        extra_env: dict[str, str] | None = None,
        app: str = APP,
    ) -> None:
        self.name = name
        self.log_path = logdir / f"{name}.log"
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("PGQUEUE_APP", "DATABASE_URL", "PGQUEUE_TEST_DSN")
        }
        env.update(PGQUEUE_DSN=dsn, PGQUEUE_SCHEMA=schema, PGAPPNAME=name, PYTHONUNBUFFERED="1")
        env.update(extra_env or {})
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pgqueue.cli", "--app", app, "work", *args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid = self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """Wait until the log matches the regular expression ``pattern``."""
        return wait_until(
            lambda: re.search(pattern, self.log()),
            timeout=timeout,
            what=f"{pattern!r} in the log of {self.name}",
        )

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float = 15.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.name} did not exit within {timeout}s:\n{self.log()[-3000:]}"
            ) from None

    def children(self) -> list[int]:
        """Pids of this process's descendants (a supervisor's workers run in sessions of
        their own, so killing our process group does not reach them)."""
        parents: dict[int, int] = {}
        for entry in os.listdir("/proc"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = Path(f"/proc/{entry}/stat").read_text() if entry.isdigit() else ""
                if stat:
                    parents[int(entry)] = int(stat[stat.rindex(")") + 2 :].split()[1])
        found, frontier = [], [self.pid]
        while frontier:
            kids = [pid for pid, ppid in parents.items() if ppid in frontier]
            found += kids
            frontier = kids
        return found

    def kill(self) -> None:
        """SIGKILL the process, its group and its descendants (SIGCONT first, in case one
        is stopped)."""
        pids = [self.pid, *self.children()]
        for sig in (signal.SIGCONT, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, sig)
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        self._log.close()


class Workers:
    """Starts worker processes for one test and kills them all in ``close``."""

    def __init__(self, dsn: str, schema: str) -> None:
        self.dsn = dsn
        self.schema = schema
        self.logdir = Path(tempfile.mkdtemp(prefix="pgqworkers"))
        self.procs: list[WorkerProc] = []

    def start(
        self,
        *args: str,
        name: str | None = None,
        env: dict[str, str] | None = None,
        app: str = APP,
    ) -> WorkerProc:
        """A worker process; ``env`` adds environment variables (sample_app reads some);
        ``app`` is the --app to run (sample_app by default)."""
        proc = WorkerProc(
            self.dsn, self.schema, list(args), name or f"w{len(self.procs)}", self.logdir, env, app
        )
        self.procs.append(proc)
        return proc

    def by_pid(self, pid: int | None) -> WorkerProc:
        for p in self.procs:
            if p.pid == pid:
                return p
        raise AssertionError(f"no worker process with pid {pid}")

    def registered(self, conn: psycopg.Connection[Any]) -> set[int]:
        """Pids in the workers table."""
        return {r[0] for r in conn.execute(f'SELECT pid FROM "{self.schema}".workers')}

    def wait_registered(
        self, conn: psycopg.Connection[Any], *procs: WorkerProc, timeout: float = 15.0
    ) -> None:
        want = {p.pid for p in procs}
        wait_until(
            lambda: want <= self.registered(conn),
            timeout=timeout,
            what=f"workers {sorted(want)} registered",
        )

    def logs(self) -> str:
        """Each worker's log: every line that is not INFO (at most 100), then the last 30."""
        out = []
        for p in self.procs:
            lines = p.log().splitlines()
            notable = [line for line in lines if " INFO " not in line][:100]
            out.append(f"----- {p.name} (pid {p.pid}): not INFO -----")
            out.extend(notable)
            out.append(f"----- {p.name}: last lines -----")
            out.extend(lines[-30:])
        return "\n".join(out)

    def close(self) -> None:
        """Kill every worker; print their logs (pytest shows them if the test failed)."""
        for p in self.procs:
            p.kill()
        if self.procs:
            print(self.logs())
        shutil.rmtree(self.logdir, ignore_errors=True)


def json_result(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def state_of(conn: psycopg.Connection[Any], schema: str, job_id: int) -> str:
    return str(job(conn, schema, job_id)["state"])


def wait_state(
    conn: psycopg.Connection[Any], schema: str, job_id: int, state: str, timeout: float = 10.0
) -> dict[str, Any]:
    """Wait until the job is in ``state``; return its row."""
    wait_until(
        lambda: state_of(conn, schema, job_id) == state,
        timeout=timeout,
        what=f"job {job_id} {state}",
    )
    return job(conn, schema, job_id)
