"""The jobs page's filter, read from the query string: checked, never trusted.

A bad value (an unknown state, a queue name that is not an identifier, a date that does
not parse) raises ``InvalidJobError`` with a message the page shows; nothing is queried.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from ..admin import STATES
from ..errors import InvalidJobError
from ..jobspec import check_queue, check_task_name

#: The states the filter offers ('scheduled': queued with run_at still ahead).
FILTER_STATES = (*STATES, "scheduled")
PAGE_SIZES = (20, 50, 100, 200)


@dataclass(frozen=True)
class JobFilter:
    """What the jobs page shows; every field optional."""

    state: str | None = None
    queue: str | None = None
    task: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    search: str | None = None

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> JobFilter:
        """From query parameters (or form fields); empty values are unset."""

        def get(name: str) -> str | None:
            value = (params.get(name) or "").strip()
            return value or None

        state, queue, task = get("state"), get("queue"), get("task")
        if state is not None and state not in FILTER_STATES:
            raise InvalidJobError(f"unknown state {state!r}: use one of {', '.join(FILTER_STATES)}")
        if queue is not None:
            check_queue(queue)
        if task is not None:
            check_task_name(task)
        search = get("search")
        if search is not None and len(search) > 200:
            raise InvalidJobError("the search text is longer than 200 characters")
        return cls(state, queue, task, _moment(get("since"), "since"),
                   _moment(get("until"), "until"), search)  # fmt: skip

    def params(self) -> dict[str, Any]:
        """The job_page query's parameters (without before/limit)."""
        scheduled = True if self.state == "scheduled" else None
        state = "queued" if self.state == "scheduled" else self.state
        search = None
        if self.search is not None:
            escaped = self.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            search = f"%{escaped}%"
        return {"state": state, "scheduled": scheduled, "queue": self.queue, "task": self.task,
                "since": self.since, "until": self.until, "search": search}  # fmt: skip

    def query_string(self) -> dict[str, str]:
        """The filter as query parameters (for links to the next page)."""
        out = {}
        for key, value in asdict(self).items():
            if isinstance(value, datetime):
                out[key] = value.strftime("%Y-%m-%dT%H:%M")
            elif value is not None:
                out[key] = str(value)
        return out

    @property
    def empty(self) -> bool:
        return not any(asdict(self).values())


def _moment(text: str | None, name: str) -> datetime | None:
    """'2026-12-05T10:30' (the browser's datetime-local, read as UTC) or ISO 8601."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidJobError(
            f"{name}: {text!r} is not a date and time (YYYY-MM-DDTHH:MM)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def page_size(text: str | None) -> int:
    """The page size from the query string; 50 unless one of PAGE_SIZES is asked for."""
    return int(text) if text and text.isdigit() and int(text) in PAGE_SIZES else 50


def before_id(text: str | None) -> int | None:
    """The keyset cursor: the last id of the previous page."""
    if not text:
        return None
    if not text.isdigit() or not 0 < int(text) < 2**63:
        raise InvalidJobError(f"before must be a job id, got {text!r}")
    return int(text)
