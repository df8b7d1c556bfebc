"""pgqueue's pytest plugin, installed with pgqueue (entry point ``pytest11``).

Fixtures (all named ``pgqueue_*``, so they clash with nothing of yours):

- ``pgqueue_dsn`` (session): the test database: ``--pgqueue-dsn``, else
  ``$PGQUEUE_TEST_DSN``, else the ``pgqueue_dsn`` ini option, else your app's DSN
  (``$PGQUEUE_DSN``, ``$DATABASE_URL``, else the embedded server).
- ``pgqueue_schema``: a fresh schema on it (``pgqueue_test_<random>``), migrated, dropped
  after the test with everything in it.
- ``pgqueue_app``: your App (``--pgqueue-app`` or the ``pgqueue_app`` ini option,
  ``module:attribute``) pointed at that schema for the test and pointed back after; with
  neither, a new empty ``App`` on it (register tasks in the test).
- ``pgqueue_eager``: your App (or a new one) in eager mode (``pgqueue.testing.eager``):
  enqueue runs the handler at once; no database is touched.

Importing this module imports nothing of pgqueue's until a fixture is used.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from ..app import App


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pgqueue")
    group.addoption(
        "--pgqueue-dsn",
        default=None,
        help="PostgreSQL for pgqueue's fixtures (default: $PGQUEUE_TEST_DSN, then your app's)",
    )
    group.addoption(
        "--pgqueue-app",
        default=None,
        help="your App as module:attribute, for the pgqueue_app/pgqueue_eager fixtures",
    )
    parser.addini("pgqueue_dsn", "PostgreSQL for pgqueue's fixtures", default="")
    parser.addini("pgqueue_app", "your App as module:attribute (pgqueue_app fixture)", default="")


def _setting(config: pytest.Config, name: str) -> str | None:
    value = config.getoption(name) or config.getini(name)
    return str(value) if value else None


def _user_app(config: pytest.Config) -> App | None:
    path = _setting(config, "pgqueue_app")
    if path is None:
        return None
    from ..cli.common import load_app

    return load_app(path)


@pytest.fixture(scope="session")
def pgqueue_dsn(pytestconfig: pytest.Config) -> str:
    """The DSN of the test database (see the module's docstring for the order)."""
    dsn = (
        pytestconfig.getoption("pgqueue_dsn")
        or os.environ.get("PGQUEUE_TEST_DSN")
        or pytestconfig.getini("pgqueue_dsn")
    )
    if dsn:
        return str(dsn)
    from ..db import resolve_dsn

    return resolve_dsn(None)


@pytest.fixture
def pgqueue_schema(pgqueue_dsn: str) -> Iterator[str]:
    """A fresh schema, migrated to this pgqueue's head; dropped (CASCADE) after the test."""
    import psycopg

    from ..migrate import upgrade

    name = "pgqueue_test_" + uuid.uuid4().hex[:12]
    upgrade(pgqueue_dsn, name)
    try:
        yield name
    finally:
        with psycopg.connect(pgqueue_dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def pgqueue_app(
    pytestconfig: pytest.Config, pgqueue_dsn: str, pgqueue_schema: str
) -> Iterator[App]:
    """Your App on the test's schema (``--pgqueue-app``/ini ``pgqueue_app``), or a new
    empty one; its pools are closed after the test."""
    from . import use_schema

    app = _user_app(pytestconfig)
    if app is not None:
        with use_schema(app, pgqueue_dsn, pgqueue_schema):
            yield app
        return
    from ..app import App

    fresh = App(pgqueue_dsn, schema=pgqueue_schema)
    try:
        yield fresh
    finally:
        fresh.close()


@pytest.fixture
def pgqueue_eager(pytestconfig: pytest.Config) -> Iterator[App]:
    """Your App (or a new one) in eager mode for the test: enqueue runs the handler at
    once and nothing touches a database (``pgqueue.testing.eager``)."""
    from . import eager

    app = _user_app(pytestconfig)
    if app is None:
        from ..app import App

        app = App("postgresql:///pgqueue-eager-mode-needs-no-database")
    with eager(app):
        yield app
