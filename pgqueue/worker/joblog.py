"""Per-job INFO lines ("started", "succeeded") written off the event loop.

A drain of no-op jobs spends about 22 us of the worker's Python per job. Two log lines
through ``logging`` cost about 16 us more on the loop (the record, its caller lookup,
formatting, one write and flush each): at the default level the drain ran at 63% of its
rate at ``--log-level warning``. Here the loop only appends a tuple (the time, what
happened, the job); a thread turns them into ordinary ``LogRecord``s (with the time of
the event, not of the writing) every ``FLUSH_EVERY`` seconds, in batches, while the loop
waits on the database. Handlers see the same records as before (message, level,
``extra`` fields), from the ``pgqueue-joblog`` thread, at most ``FLUSH_EVERY`` later.

Order is kept: a line logged directly (a retry, a failure, a lost lease: rare, and
written at once) first writes what is pending here, through ``flush()``. If the thread
cannot keep up (a slow handler), ``add`` waits for it once ``MAX_PENDING`` lines are
pending instead of letting memory grow. Lines are written at ``close()`` (worker stop);
a worker killed with SIGKILL loses at most the last ``FLUSH_EVERY`` of them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .. import logs
from .runner import Claimed

#: How often the thread writes what is pending (seconds).
FLUSH_EVERY = 0.05
#: Pending lines past which ``add`` writes them itself (a handler slower than the jobs).
MAX_PENDING = 50_000

STARTED = 0
SUCCEEDED = 1


class JobLog:
    """Collects per-job INFO events on the loop; a thread logs them to ``logger``."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self._pending: deque[tuple[float, int, Claimed, float]] = deque()
        self._write = threading.Lock()  # one writer at a time keeps the order
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None

    def enabled(self) -> bool:
        """Whether INFO lines are wanted (checked per call site, as ``isEnabledFor``)."""
        return self.logger.isEnabledFor(logging.INFO)

    def start(self) -> None:
        """Start the writing thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="pgqueue-joblog", daemon=True)
            self._thread.start()

    def started(self, job: Claimed) -> None:
        """``job`` started (call only when ``enabled()``)."""
        self._pending.append((time.time(), STARTED, job, 0.0))
        if len(self._pending) > MAX_PENDING:
            self.flush()

    def succeeded(self, job: Claimed, duration: float) -> None:
        """``job`` succeeded after ``duration`` seconds (call only when ``enabled()``)."""
        self._pending.append((time.time(), SUCCEEDED, job, duration))
        if len(self._pending) > MAX_PENDING:
            self.flush()

    def flush(self) -> None:
        """Write every pending line now, on the calling thread (before a direct line,
        so the log keeps its order). A handler's error is reported by ``logging`` itself
        (``handleError``), as for any record."""
        pending = self._pending
        if not pending:
            return
        with self._write:
            direct = logs.direct_writer(self.logger)
            text = direct.text_formatter() if direct is not None else None
            if direct is not None and text is not None:  # the default: plain text lines
                direct.write_lines(_text_lines(text.second_text, self.logger.name, pending))
                return
            if direct is not None:  # only pgqueue's handler: lines without LogRecords
                name, line, fields = self.logger.name, direct.line, self._fields
                extra = direct.wants_fields()
                lines = []
                while pending:
                    lines.append(line(name, *fields(*pending.popleft(), extra)))
                direct.write_lines(lines)
                return
            with logs.batched():
                handle, record = self.logger.handle, self._record
                while pending:
                    handle(record(*pending.popleft()))

    def close(self) -> None:
        """Write what is pending and stop the thread."""
        self._closed = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.flush()

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(FLUSH_EVERY)
            self.flush()

    @staticmethod
    def _fields(
        at: float, what: int, job: Claimed, duration: float, with_extra: bool = True
    ) -> tuple[float, str, dict[str, Any] | None]:
        """(time, message, extra fields or None when not ``with_extra``) of one line."""
        if what == STARTED:
            message = f"job {job.id} {job.task} attempt {job.attempt} started"
            if not with_extra:
                return at, message, None
            extra = {"job_id": job.id, "task": job.task, "attempt": job.attempt, "event": "started"}
            if job.trace is not None:  # traced (pgqueue.otel): the run's span
                extra["trace_id"], extra["span_id"] = job.trace
        else:
            ms = duration * 1000
            message = f"job {job.id} {job.task} attempt {job.attempt} succeeded in {ms:.1f}ms"
            if not with_extra:
                return at, message, None
            extra = {
                "job_id": job.id,
                "task": job.task,
                "attempt": job.attempt,
                "duration_ms": round(duration * 1000, 3),
                "event": "succeeded",
            }
            if job.trace is not None:
                extra["trace_id"], extra["span_id"] = job.trace
        return at, message, extra

    def _record(self, at: float, what: int, job: Claimed, duration: float) -> logging.LogRecord:
        at, message, extra = self._fields(at, what, job, duration)
        assert extra is not None
        record = self.logger.makeRecord(
            self.logger.name, logging.INFO, __file__, 0, message, (), None, None, extra
        )
        record.created = at
        record.msecs = (at - int(at)) * 1000
        record.relativeCreated = (at - logging._startTime) * 1000  # type: ignore[attr-defined]
        return record


def _text_lines(
    second: Callable[[float], str], name: str, pending: deque[tuple[float, int, Claimed, float]]
) -> list[str]:
    """The pending events as ``TextFormatter`` lines (what ``format`` makes of their records:
    tests/unit/test_joblog.py compares), each made by one %-format (measured faster than
    an f-string with the same fields here), no call per line but the time's (cached per
    second): the per-job lines are what the worker writes most, and at the default level
    their cost is part of every drain."""
    started = f"%s,%03d INFO    {name}: job %d %s attempt %d started\n"
    succeeded = f"%s,%03d INFO    {name}: job %d %s attempt %d succeeded in %.1fms\n"
    lines: list[str] = []
    append, popleft = lines.append, pending.popleft
    while pending:
        at, what, job, duration = popleft()
        if what == STARTED:
            append(started % (second(at), (at % 1) * 1000, job.id, job.task, job.attempt))
        else:
            append(
                succeeded
                % (second(at), (at % 1) * 1000, job.id, job.task, job.attempt, duration * 1000)
            )
    return lines
