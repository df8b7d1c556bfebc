"""``app.admin``: see and steer jobs from Python, through the same SQL functions and views
that ``psql`` users call (retry_job, cancel_job, pause_queue, queue_stats, ...).

Every method is safe while workers run. Unknown ids raise ``JobNotFound``; unknown queue
names raise ``UnknownQueueError``; a malformed name raises ``InvalidJobError``. Nothing
is written when one of them is raised.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from psycopg.rows import dict_row
from psycopg.types.json import JsonbLoader

from .codec import BadTag, revive
from .errors import InvalidJobError, JobNotFound, UnknownQueueError
from .jobspec import check_queue, check_task_name

if TYPE_CHECKING:
    from .app import App

STATES = ("waiting", "queued", "running", "succeeded", "failed", "cancelled")
FINISHED = ("succeeded", "failed", "cancelled")
MAX_AGE = 100 * 365.25 * 86400.0  # prune's older_than: beyond this PostgreSQL's dates overflow


class Admin:
    """Operator actions for one app; get it as ``app.admin``."""

    def __init__(self, app: App) -> None:
        self.app = app

    def _rows(
        self, name: str, params: dict[str, Any] | None = None, *, raw_json: bool = False
    ) -> list[dict[str, Any]]:
        """The query's rows as dicts; with ``raw_json`` a jsonb value Python cannot decode
        (nested too deeply, a number ``int()`` refuses) comes back as its JSON text."""
        with self.app.pool().connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            if raw_json:
                cur.adapters.register_loader("jsonb", _JsonbOrText)
            cur.execute(self.app.query(name), params or {})
            return list(cur.fetchall()) if cur.description else []

    # -- looking -------------------------------------------------------------------------
    def queues(self) -> list[dict[str, Any]]:
        """The ``queue_stats`` view: per queue, queued/scheduled/running/failed counts, the
        oldest due job's age, jobs finished in the last minute, and whether it is paused."""
        return self._rows("queue_stats_list")

    def unknown_tasks(self) -> list[dict[str, Any]]:
        """Tasks no live worker runs, per queue: jobs handed back by workers that do not
        know the task and that no live worker of the queue knows now (``since`` the first
        hand-back, ``unknown_seconds``, ``queued`` jobs), and jobs of it that failed with
        kind ``unknown_task`` (``failed``, still in the dead letter). Empty when all is
        well."""
        return self._rows("unknown_task_list")

    def running(self) -> list[dict[str, Any]]:
        """The ``running_jobs`` view, oldest job first: worker, attempt, run and lease
        seconds, whether a cancel was asked, and the progress its handler last reported
        (``progress_done``, ``progress_total``, ``progress_percent``, ``progress_message``,
        ``progress_at``: NULL until it reports)."""
        return self._rows("job_running_list")

    def job(self, job_id: int, *, decode_types: bool = True) -> dict[str, Any]:
        """Everything about one job: arguments, state, every attempt's error, result,
        ``progress`` (what its handler last reported with ``ctx.progress``: done, total,
        message, at) and ``checkpoint`` (its last ``ctx.checkpoint`` state). A
        value Python cannot decode (a poison job's args) is given as its JSON text.
        Typed arguments (UUID, datetime, ...: ``pgqueue.codec``) come back as those
        values, or as stored (tagged objects) with ``decode_types=False``."""
        rows = self._rows("job_get", {"id": _job_id(job_id)}, raw_json=True)
        if not rows:
            raise JobNotFound(f"no job with id {job_id}")
        return _typed(rows[0]) if decode_types else rows[0]

    def jobs(
        self,
        queue: str | None = None,
        state: str | None = None,
        task: str | None = None,
        limit: int = 50,
        *,
        decode_types: bool = True,
    ) -> list[dict[str, Any]]:
        """Jobs, newest first, filtered by queue, state and task: id, queue, task, args,
        kwargs, state, priority, attempt, max_attempts, run_at, created_at, finished_at,
        last_error, progress (what its handler last reported with ``ctx.progress``, or
        None). Typed arguments are decoded (``pgqueue.codec``), or left as stored with
        ``decode_types=False``; arguments Python cannot decode come as JSON text."""
        if queue is not None:
            self._known_queue(queue)
        choices = (*STATES, "scheduled")
        if state is not None and state not in choices:
            raise InvalidJobError(f"unknown state {state!r}: use one of {', '.join(choices)}")
        # 'scheduled' is a queued job whose run_at has not come (as in queue_stats)
        scheduled = True if state == "scheduled" else None
        state = "queued" if state == "scheduled" else state
        if task is not None:
            check_task_name(task)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 100_000:
            raise InvalidJobError("limit must be a whole number from 1 to 100000")
        rows = self._rows(
            "job_list",
            {"queue": queue, "state": state, "scheduled": scheduled, "task": task, "limit": limit},
            raw_json=True,
        )
        return [_typed(row) for row in rows] if decode_types else rows

    def workers(self) -> list[dict[str, Any]]:
        """Live workers: host, pid, queues, concurrency, last heartbeat, jobs running."""
        return self._rows("worker_list")

    # -- steering ------------------------------------------------------------------------
    def retry(self, job_ids: Iterable[int] | int) -> dict[int, bool]:
        """Put failed or cancelled jobs back to queued with fresh attempts.

        Returns job id -> whether it was retried (False: it was not failed/cancelled, or
        its dedupe key is held by another unfinished job). Raises ``JobNotFound`` (and
        retries nothing) if any id does not exist.
        """
        ids = _job_ids(job_ids)
        self._exist(ids)
        return {i: bool(self._rows("job_retry", {"id": i})[0]["retried"]) for i in ids}

    def retry_failed(self, queue: str | None = None, task: str | None = None) -> int:
        """Retry every failed job (of one queue and/or task); returns how many."""
        if queue is not None:
            self._known_queue(queue)
        if task is not None:
            check_task_name(task)
        return int(self._rows("job_retry_failed", {"queue": queue, "task": task})[0]["retried"])

    def cancel(self, job_ids: Iterable[int] | int) -> dict[int, str]:
        """Cancel jobs: queued ones at once ('cancelled'); running ones are asked to stop
        ('cancelling': the worker hears it within a second and the job ends cancelled).
        A job that had already finished keeps its state, which is returned. Raises
        ``JobNotFound`` (and cancels nothing) if any id does not exist."""
        ids = _job_ids(job_ids)
        self._exist(ids)
        return {i: str(self._rows("job_cancel", {"id": i})[0]["state"]) for i in ids}

    def delete(self, job_ids: Iterable[int] | int) -> dict[int, str]:
        """Delete finished jobs (succeeded, failed, cancelled): 'deleted'. A job that has
        not finished is left as it is and its state returned (cancel it first). Raises
        ``JobNotFound`` (and deletes nothing) if any id does not exist."""
        ids = _job_ids(job_ids)
        self._exist(ids)
        return {i: str(self._rows("job_delete", {"id": i})[0]["state"]) for i in ids}

    def pause(self, queue: str) -> None:
        """Stop workers claiming from ``queue`` (jobs still go in). Pausing a queue that
        has no jobs yet is allowed."""
        check_queue(queue)
        self._rows("queue_pause", {"queue": queue})

    def resume(self, queue: str) -> bool:
        """Let workers claim from ``queue`` again; False if it was not paused."""
        self._known_queue(queue)
        return bool(self._rows("queue_resume", {"queue": queue})[0]["resumed"])

    def set_limits(self, queue: str, **limits: float | None) -> dict[str, Any]:
        """Change a queue's fleet-wide limits; returns all of them afterwards.

        Keywords (a limit not named keeps its value; ``None`` removes it):
        ``max_running`` (jobs of the queue running at once over all workers),
        ``max_running_per_group`` (per ``group_key``), ``rate_limit`` + ``rate_period``
        (at most rate_limit claims per rate_period seconds, windows aligned to the epoch;
        set or clear them together), ``priority_aging`` (every this many seconds, due jobs
        waiting behind higher-priority work move up one priority step).
        Workers apply a change at their next claim. Raises ``InvalidJobError`` naming
        the bad value (nothing written). The queue need not have jobs yet.
        """
        check_queue(queue)
        unknown = set(limits) - set(LIMITS)
        if unknown:
            raise InvalidJobError(f"unknown limit {sorted(unknown)[0]!r}: use {', '.join(LIMITS)}")
        current = {r["queue"]: r for r in self.queues()}.get(queue, {})
        merged = {k: limits.get(k, current.get(k)) for k in LIMITS}
        for name, value in merged.items():
            merged[name] = _limit(name, value)
        if (merged["rate_limit"] is None) != (merged["rate_period"] is None):
            raise InvalidJobError("rate_limit and rate_period go together: set or clear both")
        self._rows("queue_set_limits", {"queue": queue, **merged})
        return merged

    def prune(self, older_than: float, states: Iterable[str] = FINISHED) -> int:
        """Delete finished jobs (of ``states``) that finished more than ``older_than``
        seconds ago; returns how many."""
        chosen = list(states)
        bad = [s for s in chosen if s not in FINISHED]
        if bad or not chosen:
            raise InvalidJobError(f"prune takes finished states only: {', '.join(FINISHED)}")
        if (
            isinstance(older_than, bool)
            or not isinstance(older_than, (int, float))
            or not 0 <= older_than <= MAX_AGE  # NaN fails this too
        ):
            raise InvalidJobError(
                f"older_than must be a number of seconds from 0 to {MAX_AGE:.0f} (100 years)"
            )
        rows = self._rows("job_prune", {"older_than": float(older_than), "states": chosen})
        return int(rows[0]["pruned"])

    # -- checks --------------------------------------------------------------------------
    def _exist(self, ids: list[int]) -> None:
        """Raise ``JobNotFound`` naming the first id that has no job (one query for all:
        the dashboard acts on up to 10,000 jobs at once)."""
        if not ids:
            return
        found = {r["id"] for r in self._rows("job_ids_existing", {"ids": [int(i) for i in ids]})}
        for i in ids:
            if i not in found:
                raise JobNotFound(f"no job with id {i}")

    def _known_queue(self, queue: str) -> None:
        check_queue(queue)
        if not self._rows("queue_known", {"queue": queue})[0]["known"]:
            raise UnknownQueueError(f"no queue named {queue!r} (no jobs and never paused)")


#: A queue's limits: name -> (lowest, highest, whole number?).
LIMITS: dict[str, tuple[float, float, bool]] = {
    "max_running": (1, 1_000_000, True),
    "max_running_per_group": (1, 1_000_000, True),
    "rate_limit": (1, 1_000_000_000, True),
    "rate_period": (0.001, 86_400, False),
    "priority_aging": (0.1, 365 * 86_400, False),
}


def _limit(name: str, value: object) -> float | None:
    if value is None:
        return None
    low, high, whole = LIMITS[name]
    ok_type = isinstance(value, int) if whole else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type or not low <= value <= high:  # type: ignore[operator]
        kind = "a whole number" if whole else "a number of seconds"
        raise InvalidJobError(f"{name} must be {kind} from {low:g} to {high:g}, got {value!r}")
    return value if whole else float(value)  # type: ignore[return-value,arg-type]


def describe_limits(limits: dict[str, Any], none: str = "no limits") -> str:
    """A queue's limits in words: 'max running 4, per group 2, rate 10/1s, priority
    aging 60s', or ``none`` (the CLI's ``queues set`` and the dashboard say it alike)."""
    parts = []
    if limits.get("max_running") is not None:
        parts.append(f"max running {limits['max_running']}")
    if limits.get("max_running_per_group") is not None:
        parts.append(f"per group {limits['max_running_per_group']}")
    if limits.get("rate_limit") is not None:
        parts.append(f"rate {limits['rate_limit']}/{float(limits['rate_period']):g}s")
    if limits.get("priority_aging") is not None:
        parts.append(f"priority aging {float(limits['priority_aging']):g}s")
    return ", ".join(parts) or none


def _job_ids(values: Iterable[int] | int) -> list[int]:
    """One job id or many, checked (``InvalidJobError`` names a bad one)."""
    if isinstance(values, int) and not isinstance(values, bool):
        return [_job_id(values)]
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise InvalidJobError(f"expected a job id or a list of job ids, got {values!r}")
    return [_job_id(i) for i in values]


def _job_id(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidJobError(f"a job id is a positive whole number, got {value!r}")
    return value


def _typed(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with the typed values in its args and kwargs decoded (``codec.revive``);
    a value that cannot be decoded (a tag this process does not register) stays as
    stored."""
    for key in ("args", "kwargs"):
        value = row.get(key)
        if isinstance(value, (list, dict)):
            with contextlib.suppress(BadTag, RecursionError):
                row[key] = revive(value)
    return row


class _JsonbOrText(JsonbLoader):
    """jsonb as Python values, or as the JSON text when Python cannot decode it."""

    def load(self, data: Any) -> Any:
        try:
            return super().load(data)
        except (RecursionError, ValueError):
            return bytes(data).decode()
