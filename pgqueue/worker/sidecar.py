"""The heartbeat sidecar: renews a worker's leases from outside the worker's interpreter.

A worker's handlers can starve any thread of its own process: a C call that holds the
GIL for 20 s (``re.match`` on a pathological pattern, a long ``hashlib`` update), a
busy loop, every CPU taken. So the renewal runs here, in a small process of its own
started with the worker (``heartbeat.Heartbeat``), with one database connection:

- every ``lease / 3`` it renews, in one fenced statement (``job_heartbeat_fenced``:
  job id + attempt + worker id + ``running``), the leases of the jobs the worker told it
  it holds, writing the progress the worker reported along (fenced the same way), and
  touches the worker's row (``worker_heartbeat``);
- it does so only while the worker is alive and not stopped: before each beat it reads
  ``/proc/<pid>/stat``; a stopped worker (SIGSTOP, state ``T``/``t``) gets no renewal,
  so its jobs go to another worker within the lease; a dead worker (gone, zombie) or a
  closed pipe ends the sidecar at once;
- jobs it could not renew and that are no longer the worker's (``job_held_check``) are
  reported back as lost; jobs whose cancellation was asked for are reported too;
- it runs one-off fenced statements for handlers (``extend_lease``, ``checkpoint``) and
  answers with the rows.

The protocol is lines on two pipes. Worker -> sidecar: the config (JSON) first, then
``a ID ATTEMPT ...`` (claimed), ``d ID ATTEMPT ...`` (finished, released, lost),
``p [[ID, ATTEMPT, PROGRESS], ...]`` and ``c {"n": N, "q": QUERY, "p": PARAMS}`` (a call).
Sidecar -> worker: ``b {"lost": [[ID, ATTEMPT]], "cancel": [ID]}``, ``r {"n": N, "rows":
[...]}`` or ``r {"n": N, "error": TEXT}``, and ``l {"level": L, "msg": TEXT}`` (log lines,
logged by the worker). Writes never block either side: a side that does not read (a
starved worker) only makes the other buffer.

It imports nothing of pgqueue (a fast start: it is run by path, ``python -I sidecar.py``);
the worker sends the SQL text from ``pgqueue/sql/queries.sql``. It ignores SIGINT, SIGTERM
and SIGHUP: a Ctrl-C or systemd's stop reaches the whole process group, and the worker's
graceful shutdown still needs its leases renewed; it ends with the worker. A database
error is reported (a log line), the connection dropped, and the next beat reconnects.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

RUNNING, STOPPED, DEAD = "running", "stopped", "dead"


def worker_state(pid: int) -> str:
    """``running``, ``stopped`` (SIGSTOP or a tracer) or ``dead`` (gone, or a zombie)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except FileNotFoundError:
        return DEAD
    except OSError:  # no /proc (not Linux): alive or not is all we can tell
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return DEAD
        except PermissionError:
            pass
        return RUNNING
    state = stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3]
    if state in (b"T", b"t"):
        return STOPPED
    if state in (b"Z", b"X", b"x"):
        return DEAD
    return RUNNING


class Sidecar:
    """One worker's lease renewer; ``run`` returns when the worker is gone."""

    def __init__(self, cfg: dict[str, Any], rfd: int, wfd: int, pending: bytes = b"") -> None:
        self.cfg = cfg
        self.rfd, self.wfd = rfd, wfd
        self.sql: dict[str, str] = cfg["sql"]
        self.pid = int(cfg["worker_pid"])
        self.lease = float(cfg["lease"])
        self.interval = self.lease / 3
        self.worker_id = str(cfg["worker_row"]["id"])
        self.held: dict[int, int] = {}
        self.progress: dict[int, tuple[int, Any]] = {}
        self.inbuf = pending
        self.out = bytearray()
        self.conn: psycopg.Connection[Any] | None = None
        self.down_logged = False

    # -- main loop -----------------------------------------------------------------------
    def run(self) -> None:
        os.set_blocking(self.rfd, False)
        os.set_blocking(self.wfd, False)
        next_beat = time.monotonic() + self.interval
        self.inbuf, first = b"", self.inbuf
        self._take(first)
        try:
            try:
                self._connection()  # now, so that the first beat does not wait for it
            except Exception as exc:
                self._failed(exc)
            while True:
                wait = max(0.0, next_beat - time.monotonic())
                writers = [self.wfd] if self.out else []
                readable, writable, _ = select.select([self.rfd], writers, [], wait)
                if readable and not self._read():
                    return  # the worker closed the pipe: it stopped or died
                if writable:
                    self._flush()
                if time.monotonic() >= next_beat:
                    state = worker_state(self.pid)
                    if state == DEAD:
                        return
                    if state == RUNNING:
                        self.beat()
                    next_beat = time.monotonic() + self.interval
                    self._flush()
        finally:
            if self.conn is not None:
                self.conn.close()

    def _read(self) -> bool:
        try:
            data = os.read(self.rfd, 1 << 16)
        except BlockingIOError:
            return True
        if not data:
            return False
        self._take(data)
        return True

    def _take(self, data: bytes) -> None:
        self.inbuf += data
        *lines, self.inbuf = self.inbuf.split(b"\n")
        for line in lines:
            if line:
                self.handle(line)

    def handle(self, line: bytes) -> None:
        kind, rest = line[:1], line[2:]
        if kind in (b"a", b"d"):
            nums = [int(x) for x in rest.split()]
            pairs = zip(nums[0::2], nums[1::2], strict=True)
            if kind == b"a":
                self.held.update(pairs)
            else:
                for job_id, attempt in pairs:
                    if self.held.get(job_id) == attempt:
                        del self.held[job_id]
                        self.progress.pop(job_id, None)
        elif kind == b"p":
            for job_id, attempt, progress in json.loads(rest):
                self.progress[int(job_id)] = (int(attempt), progress)
        elif kind == b"c":
            self.call(json.loads(rest))

    # -- database ------------------------------------------------------------------------
    def _connection(self) -> psycopg.Connection[Any]:
        if self.conn is None or self.conn.closed:
            import psycopg  # here, not at the top: the sidecar starts before it loads

            self.conn = psycopg.connect(
                self.cfg["dsn"],
                autocommit=True,
                application_name=self.cfg["application_name"],
                # the same few statements forever: behind a transaction pooler prepared
                # statements clash (pgqueue/pooler.py), and preparing saves nothing here
                prepare_threshold=None,
                # a primary that vanished without closing (failover): noticed in ~25 s
                keepalives=1,
                keepalives_idle=10,
                keepalives_interval=5,
                keepalives_count=3,
            )
        return self.conn

    def _failed(self, exc: Exception) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        self.send(
            b"l", {"level": "warning", "msg": f"heartbeat failed, will retry: {text}", "failed": 1}
        )

    def beat(self) -> None:
        """One renewal; never raises (the next beat tries again)."""
        held = dict(self.held)
        progress = {j: p for j, (a, p) in self.progress.items() if held.get(j) == a}
        try:
            conn = self._connection()
            conn.execute(self.sql["worker_heartbeat"], self.cfg["worker_row"])
            if not held:
                return
            rows = conn.execute(
                self.sql["job_heartbeat_fenced"],
                {
                    "ids": list(held),
                    "attempts": list(held.values()),
                    "lease": self.lease,
                    "worker_id": self.worker_id,
                    "progress": json.dumps({str(j): p for j, p in progress.items()}),
                },
            ).fetchall()
            renewed = {int(r[0]) for r in rows}
            missing = {j: a for j, a in held.items() if j not in renewed}
            ours: set[int] = set()
            if missing:  # skipped (locked by someone else) is not lost: ask
                ours = {
                    int(r[0])
                    for r in conn.execute(
                        self.sql["job_held_check"],
                        {
                            "ids": list(missing),
                            "attempts": list(missing.values()),
                            "worker_id": self.worker_id,
                        },
                    )
                }
        except Exception as exc:  # keep beating whatever happens
            self._failed(exc)
            return
        for job_id in progress:
            if job_id in renewed:  # written; a row skipped as locked keeps it for next beat
                del self.progress[job_id]
        lost = [[j, a] for j, a in missing.items() if j not in ours]
        for job_id, attempt in lost:
            if self.held.get(job_id) == attempt:
                del self.held[job_id]
                self.progress.pop(job_id, None)
        cancel = [int(r[0]) for r in rows if r[1]]
        # every beat that renewed something says so: the worker counts renewals (metrics)
        if lost or cancel or renewed:
            self.send(b"b", {"lost": lost, "cancel": cancel, "renewed": len(renewed)})

    def call(self, req: dict[str, Any]) -> None:
        """Run one statement for a handler (its name must be one the worker sent)."""
        try:
            cur = self._connection().execute(self.sql[req["q"]], req["p"])
            rows = cur.fetchall() if cur.description is not None else []
        except Exception as exc:
            self._failed(exc)
            self.send(b"r", {"n": req["n"], "error": f"{type(exc).__name__}: {exc}"})
            return
        self.send(b"r", {"n": req["n"], "rows": [list(r) for r in rows]}, default=str)

    # -- output --------------------------------------------------------------------------
    def send(self, kind: bytes, body: Any, default: Any = None) -> None:
        self.out += kind + b" " + json.dumps(body, default=default).encode() + b"\n"
        self._flush()

    def _flush(self) -> None:
        while self.out:
            try:
                n = os.write(self.wfd, self.out)
            except BlockingIOError:
                return  # the worker is not reading now (starved): keep it for later
            except BrokenPipeError:
                self.out.clear()  # the worker is gone; run() notices on its side
                return
            del self.out[:n]


def main() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    rfd, wfd = sys.stdin.fileno(), sys.stdout.fileno()
    data = b""
    while b"\n" not in data:  # the config line, read before going non-blocking
        chunk = os.read(rfd, 1 << 16)
        if not chunk:
            return
        data += chunk
    first, rest = data.split(b"\n", 1)
    cfg = json.loads(first)
    if cfg.get("psycopg_home") and cfg["psycopg_home"] not in sys.path:
        sys.path.append(cfg["psycopg_home"])  # where the worker found psycopg
    Sidecar(cfg, rfd, wfd, pending=rest).run()


if __name__ == "__main__":
    main()
