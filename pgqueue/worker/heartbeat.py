"""Lease renewal that no handler can starve: the worker's side of the heartbeat sidecar.

The renewal itself runs in ``sidecar.py``, by default a small process of its own (one
database connection, ``application_name`` ``pgqueue heartbeat <worker id>``), because a
thread of the worker is not enough: a handler holding the GIL in one C call starves
every thread of its process. The sidecar renews the leases of the jobs this worker
holds every ``lease / 3`` in one fenced statement while the worker is alive and not
stopped (SIGSTOP), and ends when the worker does. ``heartbeat="thread"`` runs the same
sidecar code in a thread of the worker instead (one process fewer; a GIL-holding
handler can then starve it, as before).

This side tells the sidecar which jobs are held (``Held`` sends each change: one pipe
write per claimed or finished batch) and the progress handlers report, and a thread
reads what it answers: jobs found lost (``on_lost``: the worker discards their results),
jobs whose cancellation was asked for (``on_cancel``), answers to handlers' fenced calls
(``call``: ``extend_lease``, ``checkpoint``), and log lines. If the sidecar dies it is
started again (after 1 s) with every job still held.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import psycopg

from ..db import application_name, with_connect_timeout
from ..errors import PgQueueError
from ..sql import query
from .held import Held
from .sidecar import Sidecar

__all__ = ["Heartbeat", "Held"]

log = logging.getLogger("pgqueue.worker")

SIDECAR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sidecar.py")
#: The statements the sidecar may run (sent to it as text at start).
SIDECAR_QUERIES = (
    "worker_heartbeat",
    "job_heartbeat_fenced",
    "job_held_check",
    "job_extend_lease_fenced",
    "job_checkpoint_fenced",
)
# Where psycopg is installed: the sidecar process imports it from there.
_PSYCOPG_HOME = os.path.dirname(os.path.dirname(os.path.abspath(psycopg.__file__)))
#: Finished jobs are told to the sidecar together, at most this many seconds late.
LATER = 0.1
#: How long a handler's fenced call (extend_lease, checkpoint) waits for the sidecar.
CALL_TIMEOUT = 30.0


class Heartbeat:
    """Starts the sidecar (``start``), talks to it, and ends it (``stop``)."""

    def __init__(
        self,
        dsn: str,
        schema: str,
        worker_row: dict[str, Any],
        lease: float,
        held: Held,
        on_lost: Callable[[list[tuple[int, int]]], None],
        on_cancel: Callable[[list[int]], None] | None = None,
        mode: str = "process",
    ) -> None:
        self.worker_id = str(worker_row["id"])
        self.lease = lease
        self.interval = lease / 3
        self.held = held
        self.on_lost = on_lost
        self.on_cancel = on_cancel
        self.mode = mode
        dsn = with_connect_timeout(dsn)
        self.config = {
            "dsn": dsn,
            "application_name": application_name(dsn, "heartbeat", self.worker_id),
            "worker_pid": os.getpid(),
            "lease": lease,
            "worker_row": worker_row,
            "sql": {name: query(schema, name) for name in SIDECAR_QUERIES},
            "psycopg_home": _PSYCOPG_HOME,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.renewed = 0  # leases renewed, lost, and failed beats: read by pgqueue.metrics
        self.lost = 0
        self.failures = 0
        self._lock = threading.Lock()  # the pipe to the sidecar and what waits to go
        self._w = self._r = -1
        self._pending = bytearray()  # written when the pipe has room (the reader thread)
        self._later = bytearray()  # finished jobs, sent every LATER seconds (see _sink)
        self._calls: dict[int, Future[list[list[Any]]]] = {}
        self._numbers = itertools.count()
        self._progress: dict[int, tuple[int, Any]] = {}
        self._stopping = threading.Event()
        self._sent_later = 0.0
        self._thread = threading.Thread(target=self._run, name="pgqueue-heartbeat", daemon=True)

    # -- life ----------------------------------------------------------------------------
    def start(self) -> None:
        """Start the sidecar and the thread that reads it. If the sidecar process cannot be
        started (no usable ``sys.executable``), say so and run it in a thread instead."""
        if self.mode == "process" and getattr(sys, "frozen", False):
            # a frozen app's sys.executable is the app itself, not a Python to run a script
            log.warning("a frozen app cannot start the heartbeat process; using a thread")
            self.mode = "thread"
        with self._lock:
            try:
                self._spawn()
            except OSError as exc:
                if self.mode == "thread":
                    raise
                log.warning(
                    "could not start the heartbeat process (%s); renewing leases from a thread "
                    "instead, which a handler holding the GIL can starve",
                    exc,
                )
                self.mode = "thread"
                self._spawn()
        self.held.attach(self._sink)
        self._thread.start()

    def _spawn(self) -> None:
        line = json.dumps(self.config).encode() + b"\n"
        if self.mode == "thread":
            to_r, to_w = os.pipe()
            from_r, from_w = os.pipe()
            os.write(to_w, line)
            sidecar = Sidecar(self.config, to_r, from_w)
            threading.Thread(
                target=_run_and_close, args=(sidecar,), name="pgqueue-sidecar", daemon=True
            ).start()
            self._w, self._r = to_w, from_r
            return
        # The sidecar needs only the standard library and psycopg (it finds psycopg where
        # this process found it: "psycopg_home" in its config); -P keeps the script's own
        # directory off sys.path (its neighbours are pgqueue modules, not to be imported bare).
        self.proc = subprocess.Popen(
            [sys.executable, "-P", SIDECAR],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
            close_fds=True,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._w, self._r = self.proc.stdin.fileno(), self.proc.stdout.fileno()
        os.write(self._w, line)  # small: fits the empty pipe's buffer
        os.set_blocking(self._w, False)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        """End the sidecar (its pipe closes: it stops renewing at once) and the reader.
        Safe to call twice. Blocks for at most a few seconds."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self.held.attach(None)
        with self._lock:
            self._pending.clear()
            self._later.clear()
            self._close_w()
        if self.proc is not None:
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(5)

    def _close_w(self) -> None:
        """Close our end of the pipe to the sidecar (under ``_lock``): it reads EOF."""
        if self._w >= 0:
            with contextlib.suppress(OSError):
                if self.proc is not None and self.proc.stdin is not None:
                    self.proc.stdin.close()
                else:
                    os.close(self._w)
        self._w = -1

    def _close_r(self) -> None:
        """Close our end of the pipe from the sidecar (under ``_lock``)."""
        if self._r >= 0:
            with contextlib.suppress(OSError):
                if self.proc is not None and self.proc.stdout is not None:
                    self.proc.stdout.close()
                else:
                    os.close(self._r)
        self._r = -1

    # -- to the sidecar ------------------------------------------------------------------
    def _sink(self, kind: bytes, pairs: Iterable[tuple[int, int]]) -> None:
        """``a``/``d`` and the pairs, on one line: ``a 17 1 18 1``. (One %-format of the
        whole batch: twice as fast as joining str()s; it runs for every claimed and every
        finished batch.)"""
        flat = tuple(itertools.chain.from_iterable(pairs))
        # Claimed jobs go at once (a handler may starve this process right after its
        # claim). Finished ones wait up to LATER seconds and go together: every write
        # wakes the sidecar, and with a write per completed batch W3 drained slower than
        # before the sidecar in 4 of 4 interleaved runs on 2 busy cores (median 10.3k vs
        # 13.4k jobs/s); batched, no cost showed. A late "d" only makes the sidecar renew
        # a finished job once more, which its fence refuses.
        self._send(kind + (" %d" * len(flat) % flat).encode() + b"\n", now=kind != b"d")

    def _send(self, data: bytes, now: bool = True) -> None:
        """Write to the sidecar without ever blocking; what does not fit waits for the
        reader thread to pass it on. Not ``now``: kept for the next write (or LATER s)."""
        with self._lock:
            if self._w < 0:
                return
            if not now:
                self._later += data
                if len(self._later) < 1 << 16:
                    return
                now = True
            if self._later:
                data, self._later = bytes(self._later) + data, bytearray()
            if self._pending:
                self._pending += data
                return
            try:
                n = os.write(self._w, data)
            except BlockingIOError:
                n = 0
            except OSError:  # the sidecar is gone: the reader starts a new one
                return
            if n < len(data):
                self._pending += data[n:]

    def _flush(self) -> None:
        with self._lock:
            if not self._pending or self._w < 0:
                return
            try:
                n = os.write(self._w, self._pending)
            except BlockingIOError:
                return
            except OSError:
                self._pending.clear()
                return
            del self._pending[:n]

    def progress(self, job_id: int, attempt: int, value: dict[str, Any]) -> None:
        """Keep the job's progress; it is written (fenced) with the next beat."""
        with self._lock:
            self._progress[job_id] = (attempt, value)

    def call(self, name: str, params: dict[str, Any], timeout: float = CALL_TIMEOUT) -> list[Any]:
        """Run the statement ``name`` on the sidecar's connection; its rows.

        Raises ``PgQueueError`` if the database refused or could not be reached, or the
        sidecar did not answer within ``timeout`` seconds."""
        fut: Future[list[list[Any]]] = Future()
        n = next(self._numbers)
        self._calls[n] = fut
        self._send(b"c " + json.dumps({"n": n, "q": name, "p": params}).encode() + b"\n")
        try:
            return fut.result(timeout)
        except FutureTimeout:
            raise PgQueueError(f"the heartbeat did not answer within {timeout:.0f}s") from None
        finally:
            self._calls.pop(n, None)

    def extend(self, job_id: int, attempt: int, seconds: float) -> bool:
        """Fenced lease extension for one job (called from handlers); False if lost.

        Raises ``PgQueueError`` if the database cannot be reached."""
        rows = self.call(
            "job_extend_lease_fenced",
            {"id": job_id, "attempt": attempt, "seconds": seconds, "worker_id": self.worker_id},
        )
        return bool(rows)

    # -- from the sidecar ----------------------------------------------------------------
    def _run(self) -> None:
        buf = b""
        while True:
            with self._lock:
                r, w, pending, later = self._r, self._w, bool(self._pending), bool(self._later)
            if self._stopping.is_set() and r < 0:
                return
            writers = [w] if pending and w >= 0 else []
            wait = 0.05 if pending else LATER if later else self.interval / 2
            try:
                readable, writable, _ = select.select([r], writers, [], wait)
            except (OSError, ValueError):  # a descriptor closed under us by stop()
                readable, writable = [], []
            if writable:
                self._flush()
            if later and time.monotonic() - self._sent_later >= LATER:
                self._sent_later = time.monotonic()
                self._send(b"")  # what waits in _later
            self._send_progress()
            if not readable:
                continue
            data = os.read(r, 1 << 16)
            if data:
                buf += data
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    self._handle(line)
                continue
            buf = b""
            if not self._gone():
                return

    def _send_progress(self) -> None:
        with self._lock:
            if not self._progress:
                return
            entries, self._progress = self._progress, {}
        body = json.dumps([[j, a, p] for j, (a, p) in entries.items()])
        self._send(b"p " + body.encode() + b"\n")

    def _handle(self, line: bytes) -> None:
        kind, body = line[:1], json.loads(line[2:])
        if kind == b"r":
            fut = self._calls.get(body["n"])
            if fut is not None and not fut.done():
                if "error" in body:
                    fut.set_exception(PgQueueError(body["error"]))
                else:
                    fut.set_result(body["rows"])
        elif kind == b"b":
            self.renewed += int(body.get("renewed", 0))
            lost = [(int(j), int(a)) for j, a in body["lost"]]
            lost = [(j, a) for j, a in lost if self.held.get(j) == a]
            if lost:
                self.lost += len(lost)
                self.on_lost(lost)
            if body["cancel"] and self.on_cancel is not None:
                self.on_cancel(body["cancel"])  # the fallback when the NOTIFY was missed
        elif kind == b"l":
            self.failures += int(body.get("failed", 0))
            level = logging.WARNING if body["level"] == "warning" else logging.ERROR
            log.log(level, "%s", body["msg"])

    def _gone(self) -> bool:
        """The sidecar closed its end. False when we are stopping; else start a new one
        (after 1 s) and return True."""
        with self._lock:
            self._close_r()
        if self._stopping.is_set():
            return False
        code = None
        if self.proc is not None:
            try:
                code = self.proc.wait(5)
            except subprocess.TimeoutExpired:  # it closed its output yet lives on: end it
                self.proc.kill()
                code = self.proc.wait()
        log.error("the heartbeat sidecar exited (%s); starting a new one in 1s", code)
        for fut in list(self._calls.values()):
            if not fut.done():
                fut.set_exception(PgQueueError("the heartbeat sidecar exited; try again"))
        if self._stopping.wait(1.0):
            return False
        self.restarts += 1
        with self._lock:
            self._close_w()
            self._pending.clear()
            self._later.clear()
            self._spawn()
        self.held.attach(self._sink)  # every job held now, to the new sidecar
        return True


def _run_and_close(sidecar: Sidecar) -> None:
    """The sidecar in a thread (``heartbeat="thread"``): its pipe ends are closed after."""
    try:
        sidecar.run()
    finally:
        os.close(sidecar.rfd)
        os.close(sidecar.wfd)
