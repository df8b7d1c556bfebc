"""The actions (POST): login/logout, retry/cancel/delete jobs, retry a dead-letter group,
pause/resume a queue and set its limits.

Every write goes through ``app.admin``, the functions the CLI uses. An action needs
actions enabled, an authenticated user and the session's CSRF token; it is logged on
the ``pgqueue.dashboard`` logger with who did it and from where. Job actions show a
confirmation page first (what and how many), and act only on the second POST.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ..admin import LIMITS
from ..errors import InvalidJobError
from .auth import COOKIE, SESSION_SECONDS, Auth
from .data import BULK_LIMIT, Data
from .filters import JobFilter
from .web import log, render

JOB_ACTIONS = ("retry", "cancel", "delete")


class Forbidden(Exception):
    """An action refused before anything ran: the page says why (status 403)."""


async def forbidden(request: Request, exc: Exception) -> Response:
    return render(request, "error.html", status_code=403, message=str(exc), code=403)


async def _checked_form(request: Request) -> tuple[str, FormData]:
    """The form of an allowed action, and who sends it; raises ``Forbidden`` otherwise."""
    state = request.app.state
    if not state.actions:
        raise Forbidden("actions are off: start the dashboard with --actions (and credentials)")
    who = getattr(request.state, "who", None)
    if who is None or not state.auth.enabled:
        raise Forbidden("actions need a logged-in user")
    _same_origin(request)
    # a confirmation posts back every id it counted (Starlette's default stops at 1,000)
    form = await request.form(max_fields=BULK_LIMIT + 100, max_files=0)
    if not state.auth.csrf_ok(who, str(form.get("csrf") or "")):
        raise Forbidden("the form's CSRF token is missing or wrong: reload the page and retry")
    return who, form


def _same_origin(request: Request) -> None:
    """A browser names the page a POST comes from; it must be this site."""
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
        raise Forbidden(f"a form from another site ({origin}) was refused")


def _audit(request: Request, who: str, what: str) -> None:
    client = request.client.host if request.client else "?"
    log.info("dashboard action by %s from %s: %s", who, client, what)


# -- login -----------------------------------------------------------------------------------


async def login(request: Request) -> Response:
    """GET: the form. POST: check the credentials, set the session cookie, go on."""
    auth: Auth = request.app.state.auth
    target = _next(request, request.query_params.get("next"))
    if request.method == "GET":
        return render(request, "login.html", next=target, failed=False)
    _same_origin(request)
    form = await request.form()
    who = auth.check(str(form.get("user") or ""), str(form.get("password") or ""))
    if who is None:
        client = request.client.host if request.client else "?"
        log.warning("dashboard login failed from %s", client)
        return render(request, "login.html", status_code=401, next=target, failed=True)
    response = RedirectResponse(_next(request, str(form.get("next") or "")), status_code=303)
    response.set_cookie(COOKIE, auth.session_cookie(who), max_age=SESSION_SECONDS,
                        path=_root(request), httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")  # fmt: skip
    return response


async def logout(request: Request) -> Response:
    await _checked_csrf_only(request)
    response = RedirectResponse(request.url_for("login").path, status_code=303)
    response.delete_cookie(COOKIE, path=_root(request))
    return response


async def _checked_csrf_only(request: Request) -> None:
    who = getattr(request.state, "who", None)
    form = await request.form()
    if who is None or not request.app.state.auth.csrf_ok(who, str(form.get("csrf") or "")):
        raise Forbidden("the form's CSRF token is missing or wrong")


def _root(request: Request) -> str:
    return request.url_for("overview").path


def _next(request: Request, target: str | None) -> str:
    """Where to go after logging in: a path of this dashboard only (no open redirect)."""
    root = _root(request)
    if target and target.startswith(root) and not target.startswith("//") and "\\" not in target:
        return target
    return root


# -- jobs ------------------------------------------------------------------------------------


async def act_jobs(request: Request) -> Response:
    """Retry, cancel or delete the selected jobs (``id`` fields) or, with
    ``scope=filter``, the (at most BULK_LIMIT newest) jobs that match the filter fields."""
    who, form = await _checked_form(request)
    action, _, scope = str(form.get("do") or "").partition(":")
    action = action or str(form.get("action") or "")
    scope = scope or str(form.get("scope") or "selected")
    if action not in JOB_ACTIONS:
        raise InvalidJobError(f"unknown action {action!r}: use one of {', '.join(JOB_ACTIONS)}")
    data: Data = request.app.state.data
    flt = JobFilter.parse({k: str(v) for k, v in form.items()})
    if scope == "filter":
        ids = await run_in_threadpool(data.matching_ids, flt)
    else:
        ids = _ids(form.getlist("id"))
    if not ids:
        raise InvalidJobError("no jobs selected: tick some, or act on everything that matches")
    if form.get("confirm") != "yes":
        return render(request, "confirm.html", action=action, ids=ids, scope=scope, flt=flt,
                      filter_query=flt.query_string(),
                      capped=len(ids) >= BULK_LIMIT)  # fmt: skip
    outcome = await run_in_threadpool(_run_job_action, data, action, ids)
    _audit(request, who, f"{action} {len(ids)} job(s) {_ids_text(ids)}"
           + (f" (matching {flt.query_string()})" if scope == "filter" else ""))  # fmt: skip
    return render(request, "done.html", action=action, outcome=outcome)


def _run_job_action(data: Data, action: str, ids: list[int]) -> list[tuple[int, str]]:
    admin = data.app.admin
    if action == "retry":
        return [(i, "retried" if ok else "not retried (not failed or cancelled, or its dedupe "
                 "key is held)") for i, ok in admin.retry(ids).items()]  # fmt: skip
    do: Callable[[list[int]], dict[int, str]] = admin.cancel if action == "cancel" else admin.delete
    return [(i, s) for i, s in do(ids).items()]


def _ids(values: list[Any]) -> list[int]:
    out = []
    for v in values:
        text = str(v).strip()
        if not text.isdigit() or not 0 < int(text) < 2**63:
            raise InvalidJobError(f"not a job id: {text[:40]!r}")
        out.append(int(text))
    if len(out) > BULK_LIMIT:
        raise InvalidJobError(f"at most {BULK_LIMIT} jobs at a time")
    return list(dict.fromkeys(out))


def _ids_text(ids: list[int]) -> str:
    return ",".join(map(str, ids[:20])) + (f",... ({len(ids)} in all)" if len(ids) > 20 else "")


async def act_dead(request: Request) -> Response:
    """Retry one group of dead letters (queue, task, kind, message), with confirmation."""
    who, form = await _checked_form(request)
    key = {k: str(form.get(k) or "") for k in ("queue", "task", "kind", "message")}
    data: Data = request.app.state.data
    ids = await run_in_threadpool(data.dead_group_ids, **key)
    if not ids:
        raise InvalidJobError("no failed jobs left in this group")
    if form.get("confirm") != "yes":
        return render(request, "confirm_group.html", key=key, ids=ids,
                      capped=len(ids) >= BULK_LIMIT)  # fmt: skip
    outcome = await run_in_threadpool(_run_job_action, data, "retry", ids)
    _audit(request, who, f"retry group {key} of {len(ids)} job(s) {_ids_text(ids)}")
    return render(request, "done.html", action="retry", outcome=outcome)


# -- queues ----------------------------------------------------------------------------------


async def act_queue(request: Request) -> Response:
    """Pause, resume or set the limits of a queue (no confirmation: each is undone as
    easily as it is done)."""
    who, form = await _checked_form(request)
    queue, action = str(form.get("queue") or ""), str(form.get("action") or "")
    admin = request.app.state.data.app.admin
    if action == "pause":
        await run_in_threadpool(admin.pause, queue)
        message = f"paused queue {queue}: jobs still go in, none is claimed until resumed"
    elif action == "resume":
        resumed = await run_in_threadpool(admin.resume, queue)
        message = f"resumed queue {queue}" if resumed else f"queue {queue} was not paused"
    elif action == "limits":
        changes = {name: _limit_value(name, str(form.get(name) or "")) for name in LIMITS}
        limits = await run_in_threadpool(lambda: admin.set_limits(queue, **changes))
        message = f"queue {queue}: limits now {limits}"
    else:
        raise InvalidJobError(f"unknown queue action {action!r}: use pause, resume or limits")
    _audit(request, who, message)
    return render(request, "done.html", action=action, outcome=[], message=message, queue=queue)


def _limit_value(name: str, text: str) -> float | None:
    """A limit from its form field: empty = no limit; whole numbers where LIMITS says."""
    text = text.strip()
    if not text:
        return None
    whole = LIMITS[name][2]
    try:
        return int(text) if whole else float(text)
    except ValueError:
        kind = "a whole number" if whole else "a number of seconds"
        raise InvalidJobError(f"{name} must be {kind}, got {text[:40]!r}") from None
