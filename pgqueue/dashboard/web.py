"""What every page shares: the template environment, value formatting, the error pages.

Jinja2 autoescapes every value (a job's args, errors and result are the user's data and
may hold ``<script>``); the templates never mark a value safe. Values go into JSON for
the browser through ``tojson`` (which escapes ``<``, ``>``, ``&`` and quotes).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
import psycopg
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.templating import Jinja2Templates

from ..db import first_line
from ..errors import JobNotFound, PgQueueError, UnknownQueueError

HERE = Path(__file__).resolve().parent
log = logging.getLogger("pgqueue.dashboard")

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
templates = Jinja2Templates(env=_env)


def ago(seconds: float | Decimal | None) -> str:
    """'4s', '3m 10s', '2h 5m', '3d 4h' (or '-')."""
    if seconds is None:
        return "-"
    s = int(float(seconds))
    if s < 0:
        return "in " + ago(-s)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def moment(value: datetime | None) -> str:
    """'2026-12-05 21:30:01 UTC'."""
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def since(value: datetime | None) -> str:
    """'3m 10s ago' / 'in 5s' from now."""
    if value is None:
        return "-"
    seconds = (datetime.now(UTC) - value).total_seconds()
    return f"in {ago(-seconds)}" if seconds < 0 else f"{ago(seconds)} ago"


def pretty(value: Any) -> str:
    """A JSON value, indented (the template escapes it)."""
    if isinstance(value, str):  # the JSON text of a value Python could not decode
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def plain(value: Any) -> Any:
    """Rows as JSON-ready values: Decimal -> float, datetime -> ISO text."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


_env.filters.update(ago=ago, moment=moment, since=since, pretty=pretty)


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """Render a page with what every page needs: who is logged in, whether actions are
    on, the CSRF token, ``u(name, **path_params, query={...})`` for links."""
    state = request.app.state
    who = getattr(request.state, "who", None)

    def u(route: str, query: dict[str, Any] | None = None, **params: Any) -> str:
        path = request.url_for(route, **params).path
        pairs = {k: v for k, v in (query or {}).items() if v not in (None, "")}
        return path + ("?" + urlencode(pairs) if pairs else "")

    base = {
        "who": who,
        "actions": state.actions,
        "auth_enabled": state.auth.enabled,
        "csrf": state.auth.csrf_token(who) if who and state.auth.enabled else "",
        "u": u,
        "title": state.title,
    }
    return templates.TemplateResponse(request, name, {**base, **context},
                                      status_code=status_code)  # fmt: skip


async def pgqueue_error(request: Request, exc: Exception) -> Response:
    """Bad input or an unknown job/queue: the page says what was wrong, nothing written."""
    code = 404 if isinstance(exc, (JobNotFound, UnknownQueueError)) else 400
    return _error(request, code, str(exc))


async def database_error(request: Request, exc: Exception) -> Response:
    """The database is down or refused: one line, never a traceback."""
    if isinstance(exc, psycopg.OperationalError):
        return _error(request, 503, f"database unavailable: {first_line(exc)}")
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return _error(request, 403, f"database error: {first_line(exc)} (the dashboard's "
                      "role lacks this right: see the README's Database roles)")  # fmt: skip
    return _error(request, 500, f"database error: {first_line(exc)}")


def _error(request: Request, code: int, message: str) -> Response:
    if _path(request).startswith("/api/"):
        return JSONResponse({"error": message}, status_code=code)
    return render(request, "error.html", status_code=code, message=message, code=code)


def _path(request: Request) -> str:
    """The request's path below where the dashboard is mounted."""
    path: str = request.scope["path"]
    root: str = request.scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


EXCEPTION_HANDLERS: dict[Any, Any] = {PgQueueError: pgqueue_error, psycopg.Error: database_error}
