"""``DjangoApp``: an ``App`` that connects with Django's ``DATABASES`` settings and
enqueues inside ``transaction.atomic()`` on Django's own connection."""

from __future__ import annotations

import importlib
import threading
from typing import Any

from ...app import App
from ...errors import ConfigurationError
from ...results import Job
from . import conf

#: Django's ``OPTIONS`` keys that are not libpq connection parameters.
_DJANGO_ONLY_OPTIONS = frozenset(
    {
        "isolation_level",
        "server_side_binding",
        "pool",
        "assume_role",
        "cursor_factory",
        "context",
        "prepare_threshold",
    }
)


def dsn_from_django(alias: str = "default") -> str:
    """A libpq DSN made of ``DATABASES[alias]`` (NAME, USER, PASSWORD, HOST, PORT and the
    libpq ``OPTIONS``), read now: under Django's test runner it names the test database.
    Raises ``ConfigurationError`` for an unknown alias or a database that is not
    PostgreSQL."""
    from django.db import connections
    from psycopg.conninfo import make_conninfo

    if alias not in connections.settings:
        raise ConfigurationError(
            f"settings.PGQUEUE['DATABASE'] is {alias!r}, which is not in settings.DATABASES"
        )
    wrapper = connections[alias]
    if wrapper.vendor != "postgresql":
        raise ConfigurationError(
            f"DATABASES[{alias!r}] is {wrapper.vendor}: pgqueue needs PostgreSQL"
        )
    s = wrapper.settings_dict
    params: dict[str, Any] = {
        "dbname": s.get("NAME"),
        "user": s.get("USER"),
        "password": s.get("PASSWORD"),
        "host": s.get("HOST"),
        "port": s.get("PORT"),
    }
    for key, value in (s.get("OPTIONS") or {}).items():
        if key not in _DJANGO_ONLY_OPTIONS and isinstance(value, (str, int)):
            params[key] = value
    cleaned = {k: str(v) for k, v in params.items() if v is not None and v != ""}
    try:
        return make_conninfo(**cleaned)
    except Exception as exc:  # psycopg.ProgrammingError: an OPTIONS key libpq does not know
        raise ConfigurationError(
            f"DATABASES[{alias!r}] does not make a libpq DSN: {str(exc).strip()}"
        ) from None


class DjangoApp(App):
    """An ``App`` whose DSN comes from ``DATABASES[database]`` (no second DSN).

    Inside ``transaction.atomic()`` on that alias, ``enqueue``/``defer`` (and
    ``enqueue_many``/``enqueue_batch``) write on Django's own psycopg 3 connection, in
    the transaction: a rollback leaves no job, and the worker sees the job only after
    the commit. Outside ``atomic()`` (autocommit), pgqueue's own small pool, made of the
    same settings, commits the job before ``defer`` returns. A ``connection=`` given
    explicitly wins. Raises ``ConfigurationError`` when Django's connection is
    psycopg2 (pgqueue needs psycopg 3: Django 4.2+ with ``psycopg`` installed).
    """

    def __init__(
        self, *, database: str = "default", schema: str | None = None, **options: Any
    ) -> None:
        if "dsn" in options:
            raise ConfigurationError(
                "DjangoApp takes no dsn: it connects with settings.DATABASES[database]"
            )
        super().__init__(None, schema=schema, **options)
        self.database = database

    @property
    def dsn(self) -> str:
        # Read each time, not cached: Django's test runner renames the database after
        # settings are loaded, and the jobs must go where the ORM's rows go.
        return dsn_from_django(self.database)

    def django_connection(self) -> Any:
        """Django's psycopg connection when inside ``atomic()`` on this app's alias, else
        None (connects first if Django has not yet)."""
        from django.db import connections

        wrapper = connections[self.database]
        if not wrapper.in_atomic_block:
            return None
        wrapper.ensure_connection()
        raw = wrapper.connection
        import psycopg

        if not isinstance(raw, psycopg.Connection):
            raise ConfigurationError(
                f"DATABASES[{self.database!r}] runs on {type(raw).__module__}: pgqueue "
                "enqueues on Django's connection with psycopg 3 only (Django 4.2+ picks it "
                "when `psycopg` is installed); uninstall psycopg2 or pass connection="
            )
        return raw

    def _in_transaction(self, connection: Any) -> Any:
        return connection if connection is not None else self.django_connection()

    def enqueue(self, *args: Any, connection: Any = None, **kwargs: Any) -> Job:
        return super().enqueue(*args, connection=self._in_transaction(connection), **kwargs)

    def enqueue_many(self, *args: Any, connection: Any = None, **kwargs: Any) -> list[Job]:
        return super().enqueue_many(*args, connection=self._in_transaction(connection), **kwargs)

    def enqueue_batch(self, *args: Any, connection: Any = None, **kwargs: Any) -> list[Job]:
        return super().enqueue_batch(*args, connection=self._in_transaction(connection), **kwargs)


_lock = threading.RLock()
_app: DjangoApp | None = None


def _load(path: str) -> Any:
    module_name, _, attr = path.partition(":")
    if not attr:
        module_name, _, attr = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigurationError(
            f"settings.PGQUEUE['APP'] is {path!r}, which cannot be imported ({exc}); "
            "use 'module:attr', e.g. 'myproject.jobs:app'"
        ) from None


def get_app() -> DjangoApp:
    """The project's ``DjangoApp``: ``settings.PGQUEUE['APP']`` (an instance or a
    ``"module:attr"`` path) if set, else one built from the settings, once per process.
    Raises ``ConfigurationError`` for a bad setting or an ``APP`` that is not a
    ``DjangoApp``."""
    global _app
    with _lock:
        if _app is not None:
            return _app
        settings = conf.read()
        found = settings.app
        if found is None:
            found = DjangoApp(
                database=settings.database, schema=settings.schema_name, **settings.options
            )
        elif isinstance(found, str):
            found = _load(found)
        if not isinstance(found, DjangoApp):
            raise ConfigurationError(
                f"settings.PGQUEUE['APP'] is a {type(found).__name__}; it must be a "
                "pgqueue.contrib.django.DjangoApp, which connects with settings.DATABASES"
            )
        _app = found
        return _app


def reset() -> None:
    """Forget the app ``get_app`` built (for tests that change settings.PGQUEUE)."""
    global _app
    with _lock:
        app, _app = _app, None
    if app is not None:
        app.close()
