"""The tasks the benchmark's worker process runs (``--app pgqueue.bench.tasks:app``)."""

from __future__ import annotations

import time

from ..app import App

app = App(strict_tasks=False)


@app.task(name="bench.noop")
async def noop(i: int = 0) -> None:
    """Does nothing: measures the queue, not the handler."""


@app.task(name="bench.stamp")
async def stamp() -> float:
    """Returns the wall-clock time the handler started (for wake-up latency)."""
    return time.time()
