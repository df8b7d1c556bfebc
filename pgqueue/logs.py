"""Logging set-up for the CLI: readable lines, or one JSON object per line.

The handler writes each line at once, except inside ``batched()`` (the worker's per-job
lines, see ``pgqueue.worker.joblog``), where the lines of a batch go out in one write.
Both formatters format a record's time once per second, not per line.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any, TextIO

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}

_local = threading.local()


@contextlib.contextmanager
def batched() -> Iterator[None]:
    """Inside it, pgqueue's handler (``configure``) collects this thread's lines and
    writes them in one go at the end. Other handlers are not affected."""
    if getattr(_local, "lines", None) is not None:
        yield
        return
    lines: list[tuple[_BatchingHandler, str]] = []
    _local.lines = lines
    try:
        yield
    finally:
        _local.lines = None
        if lines:
            for handler in _BatchingHandler.instances:
                handler.write_lines([line for h, line in lines if h is handler])


def direct_writer(logger: logging.Logger) -> _BatchingHandler | None:
    """pgqueue's own handler when it is the only one a record of ``logger`` at INFO would
    reach, with no filters on the way: then a line can be formatted straight from its
    fields (``_BatchingHandler.line``) without a ``LogRecord``. None otherwise (an app's
    own handlers get real records)."""
    found: _BatchingHandler | None = None
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters or current.disabled:
            return None
        for handler in current.handlers:
            if found is not None or not isinstance(handler, _BatchingHandler):
                return None
            if handler.filters or handler.level > logging.INFO:
                return None
            found = handler
        current = current.parent if current.propagate else None
    return found


class _BatchingHandler(logging.StreamHandler):  # type: ignore[type-arg]
    instances: list[_BatchingHandler] = []

    def text_formatter(self) -> TextFormatter | None:
        """The ``TextFormatter`` when lines are plain text ending in a newline (the default),
        for ``JobLog``'s fast path; None otherwise."""
        formatter = self.formatter
        if type(formatter) is TextFormatter and self.terminator == "\n":
            return formatter
        return None

    def wants_fields(self) -> bool:
        """Whether ``line`` needs a record's extra fields (JSON does, text does not)."""
        return isinstance(self.formatter, JsonFormatter)

    def line(self, name: str, at: float, message: str, extra: dict[str, Any] | None) -> str:
        """The INFO line this handler would write for such a record (see ``direct_writer``)."""
        formatter = self.formatter
        assert isinstance(formatter, (TextFormatter, JsonFormatter))
        return formatter.info_line(at, name, message, extra or {}) + self.terminator

    def emit(self, record: logging.LogRecord) -> None:
        lines = getattr(_local, "lines", None)
        if lines is None:
            super().emit(record)
            return
        try:
            lines.append((self, self.format(record) + self.terminator))
        except Exception:
            self.handleError(record)

    def write_lines(self, lines: list[str]) -> None:
        if not lines:
            return
        with self.lock or contextlib.nullcontext():
            try:
                self.stream.write("".join(lines))
                self.flush()
            except Exception:
                self.handleError(logging.makeLogRecord({"msg": "pgqueue log batch"}))


class _SecondCache:
    """``time.strftime`` of one second, kept until the second changes."""

    def __init__(self, fmt: str, convert: Any) -> None:
        self.fmt, self.convert = fmt, convert
        self.second = -1
        self.text = ""

    def __call__(self, created: float) -> str:
        second = int(created)
        if second != self.second:
            self.text = time.strftime(self.fmt, self.convert(second))
            self.second = second
        return self.text


class TextFormatter(logging.Formatter):
    """``asctime level name: message``; the time text is made once per second."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        self._second = _SecondCache("%Y-%m-%d %H:%M:%S", time.localtime)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return f"{self._second(record.created)},{int(record.msecs):03d}"

    def second_text(self, at: float) -> str:
        """The time of ``at`` to the second, as ``formatTime`` starts it (cached)."""
        return self._second(at)

    def info_line(self, at: float, name: str, message: str, extra: dict[str, Any]) -> str:
        """What ``format`` gives for an INFO record of ``name`` made at ``at``."""
        msecs = int((at - int(at)) * 1000)
        return f"{self._second(at)},{msecs:03d} INFO    {name}: {message}"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, with the extra fields pgqueue attaches (job_id, ...)."""

    def __init__(self) -> None:
        super().__init__()
        self._second = _SecondCache("%Y-%m-%dT%H:%M:%S", time.gmtime)

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": f"{self._second(record.created)}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD:
                data[key] = value
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)

    def info_line(self, at: float, name: str, message: str, extra: dict[str, Any]) -> str:
        """What ``format`` gives for an INFO record of ``name`` made at ``at``."""
        msecs = int((at - int(at)) * 1000)
        data = {
            "ts": f"{self._second(at)}.{msecs:03d}Z",
            "level": "info",
            "logger": name,
            "message": message,
            **extra,
        }
        return _ENCODE(data)


_ENCODE = json.JSONEncoder(default=str).encode


def configure(level: str = "info", fmt: str = "text", stream: TextIO | None = None) -> None:
    """Send pgqueue's logs to ``stream`` (stderr) at ``level`` as ``text`` or ``json``."""
    handler = _BatchingHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger("pgqueue")
    for old in root.handlers:
        if old in _BatchingHandler.instances:
            _BatchingHandler.instances.remove(old)
    _BatchingHandler.instances.append(handler)
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    # psycopg_pool logs every failed reconnect at WARNING; our own lines say it once.
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
