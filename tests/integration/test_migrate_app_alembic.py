"""An application that runs its own alembic brings pgqueue's schema with ``alembic upgrade
head``: a real alembic project in a temporary directory, run by the ``alembic`` command.

Two recipes, as the README's "Your own alembic" shows: ``env.py`` calls
``pgqueue.migrate.upgrade_on(connection, schema)`` after ``context.run_migrations()`` (one
transaction for both), or one of the application's revisions calls it on
``op.get_bind()``. Either way the application's history stays in its
``alembic_version`` and pgqueue's in ``<schema>.pgqueue_version``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pgqueue import App
from pgqueue.migrate import HEAD_REVISION, current_revision

ENV_HEAD = """
import os
from alembic import context
from sqlalchemy import create_engine

import pgqueue.migrate

APP_SCHEMA = os.environ["APP_SCHEMA"]
PGQUEUE_SCHEMA = os.environ["APP_PGQUEUE_SCHEMA"]
engine = create_engine(os.environ["APP_DATABASE_URL"])
"""

ENV_CALLS_PGQUEUE = (
    ENV_HEAD
    + """
with engine.connect() as connection:
    context.configure(connection=connection, version_table_schema=APP_SCHEMA)
    with context.begin_transaction():
        context.run_migrations()
        # pgqueue's revisions, in the same transaction as the application's
        pgqueue.migrate.upgrade_on(connection, PGQUEUE_SCHEMA)
"""
)

ENV_CALLS_UPGRADE = (
    ENV_HEAD
    + """
with engine.connect() as connection:
    context.configure(connection=connection, version_table_schema=APP_SCHEMA)
    with context.begin_transaction():
        context.run_migrations()
# pgqueue's revisions, in a transaction of their own (any URL form pgqueue takes)
pgqueue.migrate.upgrade(os.environ["APP_DATABASE_URL"], PGQUEUE_SCHEMA)
"""
)

ENV_PLAIN = (
    ENV_HEAD
    + """
with engine.connect() as connection:
    context.configure(connection=connection, version_table_schema=APP_SCHEMA)
    with context.begin_transaction():
        context.run_migrations()
"""
)

APP_REVISION = """
import os
from alembic import op

revision = "a1"
down_revision = None

def upgrade():
    op.execute(f'CREATE TABLE "{os.environ["APP_SCHEMA"]}".orders (id int PRIMARY KEY)')
"""

PGQUEUE_REVISION = """
import os
from alembic import op

import pgqueue.migrate

revision = "a2"
down_revision = "a1"

def upgrade():
    pgqueue.migrate.upgrade_on(op.get_bind(), os.environ["APP_PGQUEUE_SCHEMA"])
    op.execute(f'CREATE TABLE "{os.environ["APP_SCHEMA"]}".invoices (id int PRIMARY KEY)')
"""

BROKEN_REVISION = """
from alembic import op

revision = "a3"
down_revision = "a2"

def upgrade():
    op.execute("SELECT 1 / 0")
"""


@pytest.fixture
def schemas(pg_dsn: str) -> Iterator[dict[str, str]]:
    tag = uuid.uuid4().hex[:10]
    names = {"app": f"app_{tag}", "pgqueue": f"t_{tag}"}
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{names["app"]}"')
    yield names
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for name in names.values():
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def _project(root: Path, env_py: str, *revisions: str) -> Path:
    (root / "migrations" / "versions").mkdir(parents=True)
    (root / "alembic.ini").write_text("[alembic]\nscript_location = migrations\n")
    (root / "migrations" / "env.py").write_text(env_py)
    for i, text in enumerate(revisions):
        (root / "migrations" / "versions" / f"r{i}.py").write_text(text)
    return root


def _alembic(
    root: Path, dsn: str, names: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    url = dsn.replace("postgresql://", "postgresql+psycopg://", 1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGQUEUE_")}
    env.update(APP_DATABASE_URL=url, APP_SCHEMA=names["app"], APP_PGQUEUE_SCHEMA=names["pgqueue"])
    return subprocess.run(
        [sys.executable, "-m", "alembic", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _tables(dsn: str, schema: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,)
        ).fetchall()
    return {r[0] for r in rows}


@pytest.mark.parametrize(
    "env_py", [ENV_CALLS_PGQUEUE, ENV_CALLS_UPGRADE], ids=["upgrade_on", "upgrade"]
)
def test_env_py_brings_pgqueue_with_the_app(
    env_py: str, tmp_path: Path, pg_dsn: str, schemas: dict[str, str]
) -> None:
    root = _project(tmp_path, env_py, APP_REVISION)
    done = _alembic(root, pg_dsn, schemas, "upgrade", "head")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert current_revision(pg_dsn, schemas["pgqueue"]) == HEAD_REVISION
    assert _tables(pg_dsn, schemas["app"]) == {"alembic_version", "orders"}
    # the app's history is its own: pgqueue's revisions are not in it
    with psycopg.connect(pg_dsn) as conn:
        row = conn.execute(f'SELECT version_num FROM "{schemas["app"]}".alembic_version').fetchone()
    assert row == ("a1",)
    # and the schema works: a job goes in
    app = App(pg_dsn, schema=schemas["pgqueue"], strict_tasks=False)
    try:
        assert int(app.enqueue("anything", [1])) > 0
    finally:
        app.close()
    again = _alembic(root, pg_dsn, schemas, "upgrade", "head")  # idempotent
    assert again.returncode == 0, again.stderr


def test_a_revision_brings_pgqueue(tmp_path: Path, pg_dsn: str, schemas: dict[str, str]) -> None:
    root = _project(tmp_path, ENV_PLAIN, APP_REVISION, PGQUEUE_REVISION)
    done = _alembic(root, pg_dsn, schemas, "upgrade", "head")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert current_revision(pg_dsn, schemas["pgqueue"]) == HEAD_REVISION
    assert _tables(pg_dsn, schemas["app"]) == {"alembic_version", "orders", "invoices"}
    shown = _alembic(root, pg_dsn, schemas, "current")
    assert shown.returncode == 0 and "a2 (head)" in shown.stdout, shown.stdout + shown.stderr


def test_a_failed_app_migration_takes_pgqueue_s_back(
    tmp_path: Path, pg_dsn: str, schemas: dict[str, str]
) -> None:
    """One transaction: when an application's revision after the one that brought
    pgqueue fails, pgqueue's schema goes back with the rest."""
    root = _project(tmp_path, ENV_PLAIN, APP_REVISION, PGQUEUE_REVISION, BROKEN_REVISION)
    done = _alembic(root, pg_dsn, schemas, "upgrade", "head")
    assert done.returncode != 0
    assert "division by zero" in done.stderr
    assert current_revision(pg_dsn, schemas["pgqueue"]) is None
    assert _tables(pg_dsn, schemas["app"]) == set()


def test_upgrade_takes_a_sqlalchemy_url(pg_dsn: str, unmigrated_schema: str) -> None:
    from pgqueue.migrate import upgrade

    url = pg_dsn.replace("postgresql://", "postgresql+psycopg://", 1)
    assert upgrade(url, unmigrated_schema) == (None, HEAD_REVISION)
