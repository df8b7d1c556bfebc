"""Run a ``Worker`` in this process (its own thread and event loop) for a test."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from pgqueue import App
from pgqueue.worker import Worker, WorkerConfig
from tests.helpers import wait_until


@contextlib.contextmanager
def running(app: App, **config: Any) -> Iterator[Worker]:
    """A started worker (registered, heartbeat running, listener connected if it listens);
    stopped at the end (``request_stop``) and joined. Errors from ``Worker.run`` re-raise."""
    config = {"maintenance_interval": 0.2, "shutdown_timeout": 1.0, **config}
    worker = Worker(app, WorkerConfig(**config))
    failures: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(worker.run())
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=target, name="test-worker", daemon=True)
    thread.start()
    try:
        wait_until(
            lambda: (
                failures
                or (
                    getattr(worker, "heartbeat", None) is not None
                    and worker.heartbeat.is_alive()
                    and (
                        not worker.config.listen
                        or (worker.listener is not None and worker.listener.connected.is_set())
                    )
                )
            ),
            timeout=15,
            what="worker started",
        )
        if failures:
            raise failures[0]
        yield worker
    finally:
        worker.request_stop()
        thread.join(20)
        assert not thread.is_alive(), "worker did not stop within 20s"
    if failures:
        raise failures[0]
