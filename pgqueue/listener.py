"""The LISTEN connection: wakes the worker when jobs are enqueued for its queues.

One connection per worker process. When it dies (server restart, pg_terminate_backend,
network) it is re-opened with backoff and the worker is woken once to poll, since
notifications sent while it was down are lost. Meanwhile the worker keeps polling at
its poll interval, so jobs are still picked up, only later.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import psycopg

from .db import first_line

log = logging.getLogger("pgqueue.listener")


class Listener:
    """Runs until cancelled; calls ``wake()`` for every relevant notification."""

    def __init__(self, dsn: str, channel: str, queues: list[str], wake: Callable[[], None]) -> None:
        self.dsn = dsn
        self.channel = channel
        self.queues = set(queues)
        self.wake = wake
        self.connected = asyncio.Event()
        self.reconnects = 0

    async def run(self) -> None:
        """Listen forever (until cancelled), reconnecting with backoff (0.1 s .. 5 s)."""
        backoff = 0.1
        first = True
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
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
                    self.connected.set()
                    if not first:
                        self.reconnects += 1
                        log.info("LISTEN connection re-opened; polling once for missed jobs")
                    first = False
                    backoff = 0.1
                    self.wake()  # anything enqueued while we were not listening
                    async for note in conn.notifies():
                        if note.payload in self.queues:
                            self.wake()
            except psycopg.Error as exc:
                self.connected.clear()
                log.warning("LISTEN connection lost, reconnecting: %s", first_line(exc))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
