"""What the dashboard's pages read: the admin layer's views plus a few queries of its own
(``job_page``, ``job_history_minutes``, ``job_dead_groups``, ... in pgqueue/sql).

Every read is one short statement on the app's pool. The jobs page runs under a
statement timeout (a filter on a rare value walks many rows): when it fires the caller
gets ``QueryTooSlow`` and tells the user to narrow the filter. The overview's charts
are cached for a few seconds per queue, so that many open browser tabs polling the
overview cost one history query per interval, not one per tab.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.rows import dict_row

from ..errors import PgQueueError
from .filters import JobFilter

if TYPE_CHECKING:
    from ..app import App

Row = dict[str, Any]
PAGE_TIMEOUT_MS = 5000
HISTORY_TTL = 5.0
#: At most this many jobs per "everything that matches" action or "retry group".
BULK_LIMIT = 10_000


class QueryTooSlow(PgQueueError):
    """A jobs filter took longer than the page allows."""


class Data:
    """The dashboard's reads for one App."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._history: dict[str | None, tuple[float, list[dict[str, Any]]]] = {}
        self._lock = threading.Lock()

    def rows(self, name: str, params: dict[str, Any] | None = None,
             timeout_ms: int | None = None) -> list[dict[str, Any]]:  # fmt: skip
        """The rows of one named query. With ``timeout_ms`` the statement runs in a
        transaction with that ``statement_timeout`` (raises ``QueryTooSlow`` past it)."""
        with self.app.pool().connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            if timeout_ms is None:
                cur.execute(self.app.query(name), params or {})
                return list(cur.fetchall())
            try:
                with conn.transaction():
                    cur.execute("SELECT set_config('statement_timeout', %s, true)",
                                (f"{timeout_ms}ms",))  # fmt: skip
                    cur.execute(self.app.query(name), params or {})
                    return list(cur.fetchall())
            except psycopg.errors.QueryCanceled:
                raise QueryTooSlow(
                    f"this filter read for more than {timeout_ms / 1000:g} s: narrow it "
                    "(a queue, a task, a time range) and try again"
                ) from None

    def job_page(self, flt: JobFilter, before: int | None, limit: int) -> list[dict[str, Any]]:
        """One page of jobs, newest first, after the id ``before``; limit + 1 rows are
        read so that the caller knows whether a next page exists."""
        params = {**flt.params(), "before": before, "limit": limit + 1}
        return self.rows("job_page", params, timeout_ms=PAGE_TIMEOUT_MS)

    def matching_ids(self, flt: JobFilter, limit: int = BULK_LIMIT) -> list[int]:
        """The ids of the (newest) jobs that match ``flt``, at most ``limit``."""
        params = {**flt.params(), "before": None, "limit": limit}
        return [r["id"] for r in self.rows("job_page", params, timeout_ms=PAGE_TIMEOUT_MS * 4)]

    def history(self, queue: str | None = None) -> list[dict[str, Any]]:
        """Per minute of the last hour: succeeded, failed, mean wait (cached HISTORY_TTL)."""
        now = time.monotonic()
        with self._lock:
            cached = self._history.get(queue)
            if cached is not None and now - cached[0] < HISTORY_TTL:
                return cached[1]
        rows = self.rows("job_history_minutes", {"queue": queue})
        with self._lock:
            if len(self._history) > 100:
                self._history.clear()
            self._history[queue] = (now, rows)
        return rows

    def dead_groups(self) -> list[dict[str, Any]]:
        return self.rows("job_dead_groups", {"limit": 200})

    def dead_group_ids(self, queue: str, task: str, kind: str, message: str) -> list[int]:
        params = {"queue": queue, "task": task, "kind": kind, "message": message,
                  "limit": BULK_LIMIT}  # fmt: skip
        return [r["id"] for r in self.rows("job_dead_group_ids", params)]

    def running(self) -> list[dict[str, Any]]:
        return self.rows("job_running_by_worker", {"limit": 1000})

    def dependencies(self, job: dict[str, Any]) -> tuple[list[Row], list[Row]]:
        """(the jobs it runs after, the jobs still waiting for it)."""
        after = self.rows("job_dependencies", {"ids": list(job.get("depends_on") or [])})
        waiting = self.rows("job_dependents_waiting", {"id": job["id"]})
        return after, waiting
