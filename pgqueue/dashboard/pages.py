"""The read-only pages and the JSON the overview polls. Sync endpoints: Starlette runs
them in its thread pool, where the app's (sync) connection pool serves them."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..admin import LIMITS, describe_limits
from ..errors import UnknownQueueError
from ..jobspec import check_queue
from ..periodic import status as periodic_status
from .data import BULK_LIMIT, Data
from .filters import FILTER_STATES, PAGE_SIZES, JobFilter, before_id, page_size
from .web import plain, render

COUNTS = ("waiting", "queued", "scheduled", "running", "failed", "finished_last_minute")


def _data(request: Request) -> Data:
    data: Data = request.app.state.data
    return data


def _queues(data: Data) -> list[dict[str, Any]]:
    rows = data.app.admin.queues()
    for q in rows:
        q["limits"] = describe_limits(q, none="-")
    return rows


def overview(request: Request) -> Response:
    """Every queue with its counts, oldest due job, paused, limits; charts of the hour."""
    data = _data(request)
    return render(request, "overview.html", queues=_queues(data), counts=COUNTS,
                  workers=len(data.app.admin.workers()))  # fmt: skip


def api_overview(request: Request) -> Response:
    """What the overview polls: queues and the hour's per-minute history (one queue's
    with ?queue=)."""
    data = _data(request)
    queue = request.query_params.get("queue") or None
    if queue is not None:
        check_queue(queue)
    body = {"queues": _queues(data), "history": data.history(queue),
            "workers": len(data.app.admin.workers())}  # fmt: skip
    return JSONResponse(plain(body), headers={"Cache-Control": "no-store"})


def queue_page(request: Request) -> Response:
    """One queue: its counts, limits (and the form to change them), its charts."""
    name = request.path_params["name"]
    check_queue(name)
    data = _data(request)
    found = [q for q in _queues(data) if q["queue"] == name]
    if not found:
        raise UnknownQueueError(f"no queue named {name!r} (no jobs and never paused)")
    return render(request, "queue.html", q=found[0], counts=COUNTS, limit_names=list(LIMITS))


def jobs(request: Request) -> Response:
    """Jobs, newest first, filtered; keyset pages (?before=<last id of this page>)."""
    params = request.query_params
    flt = JobFilter.parse(params)
    limit = page_size(params.get("size"))
    before = before_id(params.get("before"))
    rows = _data(request).job_page(flt, before, limit)
    more = len(rows) > limit
    rows = rows[:limit]
    next_query = {**flt.query_string(), "size": str(limit)}
    if more:
        next_query["before"] = str(rows[-1]["id"])
    return render(request, "jobs.html", rows=rows, flt=flt, filter_query=flt.query_string(),
                  more=more, next_query=next_query, before=before, size=limit,
                  sizes=PAGE_SIZES, states=FILTER_STATES, bulk_limit=BULK_LIMIT)  # fmt: skip


def job(request: Request) -> Response:
    """One job: args, result, progress (when the schema has it), every attempt's error
    with its traceback, worker, lease, dependencies."""
    data = _data(request)
    row = data.app.admin.job(request.path_params["job_id"])
    after, waiting = data.dependencies(row)
    return render(request, "job.html", job=row, after=after, waiting=waiting,
                  errors=list(reversed(row["errors"] or [])))  # fmt: skip


def dead(request: Request) -> Response:
    """Dead letters (failed jobs) grouped by their last error."""
    return render(request, "dead.html", groups=_data(request).dead_groups(),
                  bulk_limit=BULK_LIMIT)  # fmt: skip


def workers(request: Request) -> Response:
    """Live workers and the jobs each one runs."""
    data = _data(request)
    running: dict[str, list[dict[str, Any]]] = {}
    for r in data.running():
        running.setdefault(r["worker_id"] or "-", []).append(r)
    return render(request, "workers.html", workers=data.app.admin.workers(), running=running)


def periodic(request: Request) -> Response:
    """Periodic schedules with their last and next tick."""
    return render(request, "periodic.html", schedules=periodic_status(_data(request).app))
