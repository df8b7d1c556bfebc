"""The LISTEN connection: wakes the worker when jobs are enqueued for its queues.

One connection per worker process. When it dies (server restart, pg_terminate_backend,
network) it is re-opened with backoff and the worker is woken once to poll, since
notifications sent while it was down are lost. Meanwhile the worker keeps polling at
its poll interval, so jobs are still picked up, only later. A quiet connection is
probed with SELECT 1 every 10 s (and TCP keepalives are on), so a half-open one is
noticed and replaced instead of waiting forever.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import psycopg

from .db import application_name, first_line, with_connect_timeout

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
    ) -> None:
        self.dsn = dsn
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
        backoff = 0.1
        first = True
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    with_connect_timeout(self.dsn),
                    autocommit=True,
                    application_name=application_name(self.dsn, "listen", self.worker_id),
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
