"""``create_app``: the dashboard as an ASGI application (Starlette), to run with
``pgqueue dashboard`` or to mount inside your own FastAPI, Starlette or Django app."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..app import App
from ..errors import ConfigurationError
from . import actions as act
from . import pages
from .auth import Auth, identify
from .data import Data
from .web import EXCEPTION_HANDLERS, HERE, _path

#: Sent with every response: no inline script or style, no framing, no sniffing.
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
}


def create_app(
    app: App | None = None,
    *,
    dsn: str | None = None,
    schema: str | None = None,
    actions: bool = False,
    auth: Auth | None = None,
    title: str = "pgqueue",
) -> Starlette:
    """The dashboard for ``app`` (or for a new ``App(dsn, schema=schema)``).

    Read-only unless ``actions=True``. ``auth`` defaults to ``Auth.from_env()``
    (``PGQUEUE_DASHBOARD_TOKEN``, or ``PGQUEUE_DASHBOARD_USER`` +
    ``PGQUEUE_DASHBOARD_PASSWORD``); with credentials every page needs them. Raises
    ``ConfigurationError`` when actions are asked for without credentials (anyone who
    reaches the port could then retry, cancel and delete jobs). Connects to the
    database on the first request, not here.
    """
    auth = Auth.from_env() if auth is None else auth
    if actions and not auth.enabled:
        raise ConfigurationError(
            "the dashboard's actions need credentials: set PGQUEUE_DASHBOARD_TOKEN, or "
            "PGQUEUE_DASHBOARD_USER and PGQUEUE_DASHBOARD_PASSWORD (or start it read-only)"
        )
    target = app if app is not None else App(dsn, schema=schema)
    routes = [
        Route("/", pages.overview, name="overview"),
        Route("/api/overview", pages.api_overview, name="api_overview"),
        Route("/queues/{name}", pages.queue_page, name="queue"),
        Route("/jobs", pages.jobs, name="jobs"),
        Route("/jobs/{job_id:int}", pages.job, name="job"),
        Route("/dead", pages.dead, name="dead"),
        Route("/workers", pages.workers, name="workers"),
        Route("/periodic", pages.periodic, name="periodic"),
        Route("/login", act.login, methods=["GET", "POST"], name="login"),
        Route("/logout", act.logout, methods=["POST"], name="logout"),
        Route("/actions/jobs", act.act_jobs, methods=["POST"], name="act_jobs"),
        Route("/actions/dead", act.act_dead, methods=["POST"], name="act_dead"),
        Route("/actions/queues", act.act_queue, methods=["POST"], name="act_queue"),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    handlers = {**EXCEPTION_HANDLERS, act.Forbidden: act.forbidden}
    web = Starlette(routes=routes, exception_handlers=handlers)
    web.state.auth = auth
    web.state.actions = actions
    web.state.data = Data(target)
    web.state.title = title
    web.add_middleware(_Gate)
    return web


class _Gate:
    """Every request: who sends it (``request.state.who``); with credentials configured,
    nobody unknown gets past the login page and the static files. Adds the security
    headers to every response."""

    OPEN = ("/login", "/static/")

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        who = identify(request)
        request.state.who = who
        path = _path(request)

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        if who is None and not path.startswith(self.OPEN):
            response: Any
            if path.startswith("/api/") or "authorization" in request.headers:
                response = JSONResponse({"error": "authentication required"}, status_code=401)
            else:
                login = scope.get("root_path", "") + scope["app"].url_path_for("login")
                query = "?" + urlencode({"next": request.url.path})
                response = RedirectResponse(login + query, status_code=303)
            await response(scope, receive, send_secured)
            return
        await self.app(scope, receive, send_secured)
