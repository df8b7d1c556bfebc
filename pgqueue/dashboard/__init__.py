"""The web dashboard (``pip install 'pgqueue[dashboard]'``): ``pgqueue dashboard``, or
``create_app(app)`` to mount it inside your own ASGI application."""

from __future__ import annotations

try:
    from .app import create_app
    from .auth import Auth
except ImportError as exc:  # pragma: no cover - the extra is not installed
    from ..errors import ConfigurationError

    raise ConfigurationError(
        f"the dashboard needs the dashboard extra ({exc.name} is missing): "
        "pip install 'pgqueue[dashboard]'"
    ) from exc

__all__ = ["Auth", "create_app"]
