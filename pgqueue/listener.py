"""The LISTEN connection: wakes the worker when jobs are enqueued for its queues.

One connection per worker process. When it dies (server restart, pg_terminate_backend,
network) it is re-opened with backoff and the worker is woken once to poll, since
notifications sent while it was down are lost. Meanwhile the worker keeps polling at
its poll interval, so jobs are still picked up, only later. A quiet connection is
probed with SELECT 1 every 10 s (and TCP keepalives are on), so a half-open one is
noticed and replaced instead of waiting forever.

Through a transaction pooler (pgbouncer) LISTEN stays on a server connection that is not
ours after the statement, and notifications never come. Given ``check_delivery_via`` (the
worker does so behind a pooler without a listen DSN: ``pgqueue.pooler``), the listener
first finds out whether clients share server connections (``transaction_pooled``); if
they do it sends no LISTEN at all, says so once and sets ``deaf``: the worker then polls
every ``NO_LISTEN_POLL_INTERVAL`` seconds. In session mode it LISTENs, and checks once
that a notification it sends itself from another connection arrives within
``PROBE_TIMEOUT`` (deaf too if not).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import psycopg

from .db import application_name, first_line, server_of, with_connect_timeout
from .errors import ConfigurationError
from .pooler import (
    NO_LISTEN_POLL_INTERVAL,
    PROBE_TIMEOUT,
    probe_token,
    send_probe_async,
    transaction_pooled,
)

log = logging.getLogger("pgqueue.listener")


class Listener:
    """Runs until cancelled; calls ``wake()`` for every notification of one of its queues
    and ``on_cancel(job_id)`` for every cancellation request (cancel_job())."""

    def __init__(
        self,
        dsn: str,
        channel: str,
        queues: list[str],
        wake: Callable[[], None],
        cancel_channel: str | None = None,
        on_cancel: Callable[[int], None] | None = None,
        worker_id: str | None = None,
        check_delivery_via: str | None = None,
    ) -> None:
        self.dsn = dsn
        self.check_delivery_via = check_delivery_via
        self.deaf = False  # notifications cannot arrive: the worker polls instead
        self._checked = False  # check_delivery_via: done once
        self.worker_id = worker_id
        self.channel = channel
        self.cancel_channel = cancel_channel
        self.on_cancel = on_cancel
        self.queues = set(queues)
        self.wake = wake
        self.connected = asyncio.Event()
        self.reconnects = 0
        self.probe_interval = 10.0
        self.probe_timeout = 5.0

    async def run(self) -> None:
        """Listen forever (until cancelled), reconnecting with backoff (0.1 s .. 5 s)."""
        if self.check_delivery_via is not None and await self._servers_shared():
            self.deaf = True
        backoff = 0.1
        first = True
        while not self.deaf:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    with_connect_timeout(self.dsn),
                    autocommit=True,
                    application_name=application_name(self.dsn, "listen", self.worker_id),
                    prepare_threshold=None,
                    keepalives=1,
                    keepalives_idle=10,
                    keepalives_interval=5,
                    keepalives_count=3,
                )
            except psycopg.OperationalError as exc:
                log.warning(
                    "LISTEN connection failed, retrying in %.1fs: %s", backoff, first_line(exc)
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            try:
                async with conn:
                    await conn.execute(f'LISTEN "{self.channel}"')
                    if self.cancel_channel:
                        await conn.execute(f'LISTEN "{self.cancel_channel}"')
                    self.connected.set()
                    if not first:
                        self.reconnects += 1
                        log.info("LISTEN connection re-opened; polling once for missed jobs")
                    if self.check_delivery_via and not self._checked:
                        arrived = await self._delivered(conn)
                        self._checked = True
                        if not arrived:
                            self.deaf = True
                            break
                    first = False
                    backoff = 0.1
                    self.wake()  # anything enqueued while we were not listening
                    while True:
                        async for note in conn.notifies(timeout=self.probe_interval):
                            if note.channel == self.channel:
                                if note.payload in self.queues:
                                    self.wake()
                            elif self.on_cancel is not None and note.payload.isdigit():
                                self.on_cancel(int(note.payload))
                        # Quiet for a while: make sure the connection is really alive (a
                        # half-open TCP connection would otherwise wait here forever).
                        await asyncio.wait_for(conn.execute("SELECT 1"), self.probe_timeout)
            except (TimeoutError, psycopg.Error) as exc:
                self.connected.clear()
                reason = (
                    "health probe timed out"
                    if isinstance(exc, asyncio.TimeoutError)
                    else first_line(exc)
                )
                log.warning("LISTEN connection lost, reconnecting: %s", reason)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

        # Deaf: notifications cannot arrive here. Stay (a finished service would stop the
        # worker) until cancelled; the worker polls meanwhile.
        self.connected.clear()
        await asyncio.Event().wait()

    async def _servers_shared(self) -> bool:
        """``transaction_pooled`` for ``check_delivery_via``, asked until it answers
        (backoff 0.1 .. 5 s); says once if LISTEN cannot work."""
        assert self.check_delivery_via is not None
        backoff = 0.1
        while True:
            try:
                shared = await asyncio.to_thread(transaction_pooled, self.check_delivery_via)
            except ConfigurationError as exc:
                log.warning(
                    "cannot tell whether LISTEN works (%s); retrying in %.1fs", exc, backoff
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if shared:
                self._say_deaf()
            return shared

    def _say_deaf(self) -> None:
        log.warning(
            "notifications do not arrive through the connection pooler at %s (pgbouncer "
            "in transaction mode?): polling for jobs every %.1f s instead of waking on "
            "LISTEN; give a direct connection with --listen-dsn or PGQUEUE_LISTEN_DSN "
            "to wake at once",
            server_of(self.dsn),
            NO_LISTEN_POLL_INTERVAL,
        )

    async def _delivered(self, conn: psycopg.AsyncConnection[object]) -> bool:
        """Whether a notification sent from another connection reaches ``conn``; other
        notifications that come meanwhile are handled as usual. Logs once if not."""
        assert self.check_delivery_via is not None
        token = probe_token()
        await send_probe_async(self.check_delivery_via, self.channel, token)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PROBE_TIMEOUT
        while (left := deadline - loop.time()) > 0:
            async for note in conn.notifies(timeout=left):
                if note.payload == token:
                    log.info(
                        "notifications arrive through the connection pooler at %s "
                        "(session mode): waking on LISTEN",
                        server_of(self.dsn),
                    )
                    return True
                if note.channel == self.channel:
                    if note.payload in self.queues:
                        self.wake()
                elif self.on_cancel is not None and note.payload.isdigit():
                    self.on_cancel(int(note.payload))
        self._say_deaf()
        return False
