"""The worker's per-job INFO lines, written off the event loop (pgqueue.worker.joblog)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from pgqueue import logs
from pgqueue.worker.joblog import JobLog
from pgqueue.worker.runner import Claimed


def _job(job_id: int, task: str = "emails.send") -> Claimed:
    return Claimed(job_id, "default", task, [], {}, 1, 20, 0, 0, 0)


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """pgqueue's handler writing into a buffer; the logger set back afterwards."""
    root = logging.getLogger("pgqueue")
    saved = (root.handlers[:], root.level, root.propagate)
    buffer = io.StringIO()
    yield buffer
    root.handlers[:], root.level, root.propagate = saved


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_direct_lines_equal_what_the_formatter_makes_of_a_record(
    stream: io.StringIO, fmt: str
) -> None:
    """The fast path (no LogRecord) writes exactly the line the formatter would."""
    logs.configure("info", fmt, stream)
    logger = logging.getLogger("pgqueue.worker")
    joblog = JobLog(logger)
    assert logs.direct_writer(logger) is not None
    joblog.started(_job(7))
    joblog.succeeded(_job(7), 0.0123)
    pending = list(joblog._pending)
    joblog.flush()
    fast = stream.getvalue().splitlines()
    handler = logging.getLogger("pgqueue").handlers[0]
    slow = [handler.format(joblog._record(*entry)) for entry in pending]
    assert fast == slow
    assert "job 7 emails.send attempt 1 started" in fast[0]
    assert "job 7 emails.send attempt 1 succeeded in 12.3ms" in fast[1]
    if fmt == "json":
        started, done = (json.loads(line) for line in fast)
        assert (started["event"], started["job_id"], started["task"]) == (
            "started",
            7,
            "emails.send",
        )
        assert (done["event"], done["duration_ms"], done["level"]) == ("succeeded", 12.3, "info")


def test_an_apps_own_handler_gets_records_with_the_events_time_and_fields(
    stream: io.StringIO,
) -> None:
    logs.configure("info", "text", stream)
    logger = logging.getLogger("pgqueue.worker")
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    keep = Keep()
    logger.addHandler(keep)
    try:
        assert logs.direct_writer(logger) is None  # another handler: real records
        joblog = JobLog(logger)
        joblog.started(_job(9))
        at = joblog._pending[0][0]
        joblog.flush()
    finally:
        logger.removeHandler(keep)
    assert len(seen) == 1
    record = seen[0]
    assert record.created == at
    assert record.getMessage() == "job 9 emails.send attempt 1 started"
    assert (record.job_id, record.event, record.levelno) == (9, "started", logging.INFO)  # type: ignore[attr-defined]
    assert "job 9 emails.send attempt 1 started" in stream.getvalue()  # ours still wrote it


def test_the_thread_writes_pending_lines_and_close_writes_the_rest(stream: io.StringIO) -> None:
    from tests.helpers import wait_until

    logs.configure("info", "text", stream)
    joblog = JobLog(logging.getLogger("pgqueue.worker"))
    joblog.start()
    joblog.started(_job(1))
    wait_until(lambda: "job 1 " in stream.getvalue(), what="the thread wrote the line")
    joblog.succeeded(_job(1), 0.001)
    joblog.close()
    assert (
        stream.getvalue()
        .splitlines()[-1]
        .endswith("job 1 emails.send attempt 1 succeeded in 1.0ms")
    )


def test_a_direct_warning_comes_after_the_pending_lines(stream: io.StringIO) -> None:
    """Callers flush before a direct line (a retry, a lost lease), so order holds."""
    logs.configure("info", "text", stream)
    logger = logging.getLogger("pgqueue.worker")
    joblog = JobLog(logger)
    joblog.started(_job(3))
    joblog.flush()
    logger.warning("job 3 emails.send attempt 1 will retry: boom")
    lines = stream.getvalue().splitlines()
    assert [line.split(": ", 1)[1] for line in lines] == [
        "job 3 emails.send attempt 1 started",
        "job 3 emails.send attempt 1 will retry: boom",
    ]


def test_nothing_is_collected_above_info(stream: io.StringIO) -> None:
    logs.configure("warning", "text", stream)
    assert not JobLog(logging.getLogger("pgqueue.worker")).enabled()
