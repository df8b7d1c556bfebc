"""What every maintenance service shares: a pass every ``interval``, failures logged."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import psycopg

from ..db import first_line

log = logging.getLogger("pgqueue.maintenance")


class Service:
    """Runs ``run_once`` every ``interval`` seconds until cancelled. A pass that fails
    with a database error (the server away, a lock timeout) is logged and tried again
    next time; ``stopped`` ends the loop for good."""

    name = "maintenance"
    interval: float = 10.0
    stopped = False

    async def run(self) -> None:
        while not self.stopped:
            await asyncio.sleep(self.interval)
            try:
                await self.run_once()
            except psycopg.Error as exc:
                self.report_failure(exc)

    def report_failure(self, exc: psycopg.Error) -> None:
        log.warning("%s pass failed: %s", self.name, first_line(exc))

    async def run_once(self) -> Any:  # pragma: no cover - every service defines it
        raise NotImplementedError
