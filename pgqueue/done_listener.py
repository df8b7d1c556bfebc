"""The shared LISTEN connection on an app's ``<schema>_done`` channel that wakes waiters.

``Job.result()`` and ``await job.wait()`` (``results.py``) register here: one LISTEN
connection per App, shared by every waiter of the process (sync and async), so a
thousand waiters cost one connection. Every statement that finishes jobs names them on
that channel (a completion batch in one NOTIFY per 300 ids); the listener's thread calls
the callbacks registered for the ids named, and every callback after each (re)connect
(notices sent while it was not listening are lost, so everyone re-reads).

Through a transaction pooler (pgbouncer) LISTEN cannot work: the app's ``listen_dsn``
(a direct connection) is used if it has one; if not, the listener finds out whether
clients share server connections (``pooler.transaction_pooled``; no LISTEN is sent
through such a pooler) or, in session mode, whether a notification it sends itself
arrives within ``PROBE_TIMEOUT``; if not, it says so once and wakes every waiter every
``NO_LISTEN_POLL_INTERVAL`` seconds instead (each re-reads its job).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import psycopg

from .db import application_name, first_line, server_of, with_connect_timeout
from .errors import ConfigurationError
from .pooler import (
    NO_LISTEN_POLL_INTERVAL,
    PROBE_TIMEOUT,
    probe_token,
    send_probe,
    transaction_pooled,
)
from .sql import done_channel_for

if TYPE_CHECKING:
    from .app import App

# The logger keeps the name it had when this lived in results.py.
log = logging.getLogger("pgqueue.results")


class DoneListener:
    """One LISTEN connection on an app's done channel, shared by every waiter.

    ``watch(job_id, wake)`` registers a callback (called from the listener's thread) for
    every NOTIFY naming that id and after every (re)connect; it starts the listener's
    thread if it is not running. The thread reconnects with backoff (0.1 .. 5 s) when
    the connection dies, probes a quiet one with ``SELECT 1`` every ``probe_interval``
    seconds, and ends (closing its connection) once nobody has waited for
    ``idle_close`` seconds. Connection failures are logged, never raised: waiters fall
    back to their ``recheck`` reads meanwhile.
    """

    def __init__(
        self,
        dsn: str,
        channel: str,
        *,
        idle_close: float = 30.0,
        probe_interval: float = 10.0,
        tick: float = 0.5,
        check_delivery_via: str | None = None,
    ) -> None:
        self.dsn = dsn
        self.check_delivery_via = check_delivery_via
        self.deaf = False  # notifications cannot arrive: waiters are woken on a timer
        self.channel = channel
        self.idle_close = idle_close
        self.probe_interval = probe_interval
        self.tick = tick
        self.connects = 0
        self.listening = threading.Event()
        self._lock = threading.Lock()
        self._waiters: dict[str, set[Callable[[], None]]] = {}
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()

    def watch(self, job_id: int, wake: Callable[[], None]) -> Callable[[], None]:
        """Call ``wake`` when ``job_id`` is named on the channel; returns the function that
        stops it. Starts the listener if needed (without waiting for its connection: it
        wakes every waiter once its LISTEN is in place)."""
        key = str(job_id)
        with self._lock:
            self._waiters.setdefault(key, set()).add(wake)
            if self._thread is None and not self._closed.is_set():
                self._thread = threading.Thread(
                    target=self._run, name="pgqueue-results", daemon=True
                )
                self._thread.start()

        def unwatch() -> None:
            with self._lock:
                found = self._waiters.get(key)
                if found is not None:
                    found.discard(wake)
                    if not found:
                        del self._waiters[key]

        return unwatch

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread and close the connection (waiters fall back to rechecks)."""
        self._closed.set()
        with self._lock:
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _dispatch(self, payload: str) -> None:
        with self._lock:
            if not self._waiters:
                return
            wakes = [w for part in payload.split(",") for w in self._waiters.get(part, ())]
        for wake in wakes:
            wake()

    def _wake_all(self) -> None:
        with self._lock:
            wakes = [w for found in self._waiters.values() for w in found]
        for wake in wakes:
            wake()

    def _idle_exit(self, idle_since: float | None) -> tuple[bool, float | None]:
        """(exit now?, idle since); on exit the thread is unregistered under the lock, so
        a new waiter starts a fresh one."""
        now = time.monotonic()
        with self._lock:
            if self._waiters and not self._closed.is_set():
                return False, None
            idle_since = now if idle_since is None else idle_since
            if self._closed.is_set() or now - idle_since >= self.idle_close:
                self._thread = None
                return True, idle_since
            return False, idle_since

    def _connect(self) -> psycopg.Connection[Any]:
        conn = psycopg.Connection.connect(
            with_connect_timeout(self.dsn),
            autocommit=True,
            application_name=application_name(self.dsn, "results"),
            prepare_threshold=None,
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=5,
            keepalives_count=3,
        )
        try:
            conn.execute(f'LISTEN "{self.channel}"')
        except BaseException:
            conn.close()
            raise
        return conn

    def _run(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        backoff = 0.1
        idle_since: float | None = None
        last_traffic = time.monotonic()
        try:
            while True:
                stop, idle_since = self._idle_exit(idle_since)
                if stop:
                    return
                if self.deaf:
                    self._closed.wait(NO_LISTEN_POLL_INTERVAL)
                    self._wake_all()  # each waiter re-reads its job
                    continue
                if conn is None:
                    try:
                        if self.check_delivery_via is not None and transaction_pooled(
                            self.check_delivery_via
                        ):  # no LISTEN through it at all: see pooler.transaction_pooled
                            self.deaf = True
                            self._say_deaf()
                            continue
                        conn = self._connect()
                        if self.check_delivery_via is not None and not self._delivered(conn):
                            self.deaf = True
                            conn.close()
                            conn = None
                            continue
                    except (psycopg.Error, ConfigurationError) as exc:
                        if conn is not None:
                            with contextlib.suppress(Exception):
                                conn.close()
                            conn = None
                        log.warning(
                            "results LISTEN connection failed, retrying in %.1fs: %s",
                            backoff,
                            first_line(exc),
                        )
                        self._closed.wait(backoff)
                        backoff = min(backoff * 2, 5.0)
                        continue
                    backoff = 0.1
                    self.connects += 1
                    self.listening.set()
                    last_traffic = time.monotonic()
                    self._wake_all()  # whatever finished while nobody listened
                try:
                    for note in conn.notifies(timeout=self.tick):
                        last_traffic = time.monotonic()
                        self._dispatch(note.payload)
                    if time.monotonic() - last_traffic >= self.probe_interval:
                        conn.execute("SELECT 1")  # a half-open connection fails here
                        last_traffic = time.monotonic()
                except psycopg.Error as exc:
                    self.listening.clear()
                    log.warning("results LISTEN connection lost, reconnecting: %s", first_line(exc))
                    with contextlib.suppress(Exception):
                        conn.close()
                    conn = None
        finally:
            self.listening.clear()
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
            with self._lock:
                if self._thread is threading.current_thread():
                    self._thread = None

    def _delivered(self, conn: psycopg.Connection[Any]) -> bool:
        """Whether a notification sent from another connection reaches ``conn`` (checked
        once); logs once if not. Raises psycopg's error if it cannot send."""
        assert self.check_delivery_via is not None
        token = probe_token()
        send_probe(self.check_delivery_via, self.channel, token)
        deadline = time.monotonic() + PROBE_TIMEOUT
        while (left := deadline - time.monotonic()) > 0:
            for note in conn.notifies(timeout=left):
                if note.payload == token:
                    self.check_delivery_via = None
                    return True
                self._dispatch(note.payload)
        self._say_deaf()
        return False

    def _say_deaf(self) -> None:
        log.warning(
            "notifications do not arrive through the connection pooler at %s (pgbouncer "
            "in transaction mode?): job results are re-read every %.1f s instead of on "
            "NOTIFY; give a direct connection with listen_dsn= or PGQUEUE_LISTEN_DSN",
            server_of(self.dsn),
            NO_LISTEN_POLL_INTERVAL,
        )


def done_listener(app: App) -> DoneListener:
    """The app's ``DoneListener``, created on first use."""
    with app._lock:
        listener = app._done_listener
        if listener is None:
            listen_dsn = app.listen_dsn
            listener = DoneListener(
                listen_dsn or app.dsn,
                done_channel_for(app.schema),
                check_delivery_via=app.dsn if listen_dsn is None and app.pooler else None,
            )
            app._done_listener = listener
        return listener
