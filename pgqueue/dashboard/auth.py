"""Who is asking: credentials from the environment, a signed session cookie, CSRF tokens.

Two ways to authenticate, both configured from the environment (never from a file or a
command-line argument, which other users of the machine can read in ``ps``):

- a token, ``PGQUEUE_DASHBOARD_TOKEN``: sent as ``Authorization: Bearer <token>`` by
  scripts, or typed once into the login page;
- a user and password, ``PGQUEUE_DASHBOARD_USER`` + ``PGQUEUE_DASHBOARD_PASSWORD``:
  sent as HTTP basic auth, or typed into the login page.

The login page sets an HttpOnly, SameSite=Strict cookie signed with a secret of this
process (a restart logs everyone out). Every action (POST) carries a CSRF token tied to
the session, checked with a constant-time comparison. Nothing here touches the database.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from starlette.requests import Request

from ..errors import ConfigurationError

COOKIE = "pgqueue_dashboard"
SESSION_SECONDS = 12 * 3600
TOKEN_ENV = "PGQUEUE_DASHBOARD_TOKEN"
USER_ENV = "PGQUEUE_DASHBOARD_USER"
PASSWORD_ENV = "PGQUEUE_DASHBOARD_PASSWORD"


@dataclass(frozen=True)
class Auth:
    """The dashboard's credentials; empty (``Auth()``) means no authentication."""

    token: str | None = None
    user: str | None = None
    password: str | None = None
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)

    def __post_init__(self) -> None:
        if (self.user is None) != (self.password is None):
            raise ConfigurationError(
                f"dashboard basic auth needs both {USER_ENV} and {PASSWORD_ENV}"
            )
        if self.user is not None and (not self.user or ":" in self.user):
            raise ConfigurationError(f"{USER_ENV} must be a non-empty name without ':'")
        for name, value in (("token", self.token), ("password", self.password)):
            if value is not None and len(value) < 8:
                raise ConfigurationError(f"the dashboard {name} must have at least 8 characters")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Auth:
        """Read the credentials from ``PGQUEUE_DASHBOARD_*``; empty values count as unset.
        Raises ``ConfigurationError`` for half a basic-auth pair or a short secret."""
        env = os.environ if environ is None else environ
        return cls(
            token=env.get(TOKEN_ENV) or None,
            user=env.get(USER_ENV) or None,
            password=env.get(PASSWORD_ENV) or None,
        )

    @property
    def enabled(self) -> bool:
        return self.token is not None or self.user is not None

    # -- checking credentials --------------------------------------------------------------
    def check(self, user: str, password: str) -> str | None:
        """Who these credentials are (the user name, or 'token'), or None."""
        if (
            self.user is not None
            and self.password is not None
            and _same(user, self.user)
            and _same(password, self.password)
        ):
            return self.user
        if self.token is not None and not user and _same(password, self.token):
            return "token"
        return None

    def from_header(self, header: str) -> str | None:
        """Who an ``Authorization`` header (Basic or Bearer) names, or None."""
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and self.token is not None:
            return "token" if _same(value.strip(), self.token) else None
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(value.strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return None
            user, sep, password = decoded.partition(":")
            return self.check(user, password) if sep and user else None
        return None

    # -- the session cookie ----------------------------------------------------------------
    def session_cookie(self, who: str, now: float | None = None) -> str:
        """A cookie value naming ``who`` until SESSION_SECONDS from now."""
        expires = int((now or time.time()) + SESSION_SECONDS)
        body = base64.urlsafe_b64encode(who.encode()).decode() + f".{expires}"
        return body + "." + self._sign("session", body)

    def from_cookie(self, value: str, now: float | None = None) -> str | None:
        """Who a session cookie names, or None if it is forged, malformed or expired."""
        body, _, signature = value.rpartition(".")
        if not body or not hmac.compare_digest(signature, self._sign("session", body)):
            return None
        encoded, _, expires = body.partition(".")
        if not expires.isdigit() or int(expires) < (now or time.time()):
            return None
        try:
            return base64.urlsafe_b64decode(encoded.encode()).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None

    # -- CSRF ------------------------------------------------------------------------------
    def csrf_token(self, who: str) -> str:
        """The CSRF token of ``who``'s forms (the same for the whole process lifetime)."""
        return self._sign("csrf", who)

    def csrf_ok(self, who: str, token: str) -> bool:
        return bool(token) and hmac.compare_digest(token, self.csrf_token(who))

    def _sign(self, purpose: str, text: str) -> str:
        return hmac.new(self.secret, f"{purpose}|{text}".encode(), hashlib.sha256).hexdigest()


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def identify(request: Request) -> str | None:
    """Who sent the request: its Authorization header, else its session cookie. Without
    configured credentials everyone is 'anonymous' (read-only: actions need credentials)."""
    auth: Auth = request.app.state.auth
    if not auth.enabled:
        return "anonymous"
    header = request.headers.get("authorization")
    if header:
        return auth.from_header(header)
    cookie = request.cookies.get(COOKIE)
    return auth.from_cookie(cookie) if cookie else None
