"""Fixtures for the worker tests: an enqueueing App, the effects table, worker processes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from pgqueue import App
from tests.worker.procs import Workers, create_effects


@pytest.fixture
def qapp(pg_dsn: str, schema: str) -> Iterator[App]:
    """An App on the test's schema that enqueues sample_app's tasks by name."""
    application = App(pg_dsn, schema=schema, strict_tasks=False)
    yield application
    application.close()


@pytest.fixture
def effects_table(conn: psycopg.Connection[Any], schema: str) -> None:
    create_effects(conn, schema)


@pytest.fixture
def workers(pg_dsn: str, schema: str, effects_table: None) -> Iterator[Workers]:
    """Worker processes on the test's schema, all killed at the end of the test."""
    w = Workers(pg_dsn, schema)
    yield w
    w.close()
