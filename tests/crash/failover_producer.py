"""A producer process for tests/crash/test_failover.py, written as a user would write one.

``python -m tests.crash.failover_producer OUTDIR`` (DSN and schema from ``PGQUEUE_DSN`` and
``PGQUEUE_SCHEMA``) enqueues ``slow`` jobs one after another until ``OUTDIR/stop`` exists.
Each enqueue carries a dedupe key of its own (``unique_for`` 10 minutes): when one raises
``psycopg.OperationalError`` (the connection broke; the job may or may not have been
committed), it is retried with the same key, so a job that did commit is returned instead
of written twice. Every acknowledged job goes to ``OUTDIR/acked`` as ``id key``, every
failed attempt to ``OUTDIR/errors`` as ``unix-time key error``. A thread waits for the
result (``Job.result``) of every 10th job, writing ``id ok`` or ``id error ...`` to
``OUTDIR/results``.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
from pathlib import Path

import psycopg

from pgqueue import App
from pgqueue.db import first_line


def wait_results(app: App, ids: queue.Queue[int | None], out: Path) -> None:
    with out.open("a") as results:
        while (job_id := ids.get()) is not None:
            try:
                app.job(job_id).result(timeout=120)
                results.write(f"{job_id} ok\n")
            except Exception as exc:
                results.write(f"{job_id} error {type(exc).__name__}: {first_line(exc)}\n")
            results.flush()


def main(outdir: Path) -> None:
    app = App(strict_tasks=False)
    stop = outdir / "stop"
    to_wait: queue.Queue[int | None] = queue.Queue()
    waiter = threading.Thread(target=wait_results, args=(app, to_wait, outdir / "results"))
    waiter.start()
    with (outdir / "acked").open("a") as acked, (outdir / "errors").open("a") as errors:
        n = 0
        while not stop.exists():
            key = f"{os.getpid()}-{n}"
            while True:
                try:
                    job = app.enqueue("slow", [0.05], dedupe_key=key, unique_for=600)
                    break
                except psycopg.OperationalError as exc:
                    errors.write(f"{time.time():.3f} {key} {first_line(exc)}\n")
                    errors.flush()
                    time.sleep(0.05)  # a user's retry loop
            acked.write(f"{int(job)} {key}\n")
            acked.flush()
            if n % 10 == 0:
                to_wait.put(int(job))
            n += 1
            time.sleep(0.01)  # a steady stream, not a flood
    to_wait.put(None)
    waiter.join()
    app.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
