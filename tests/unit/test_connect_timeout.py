"""Every connection pgqueue opens has a connect timeout: the DSN's own ``connect_timeout``,
else libpq's ``PGCONNECT_TIMEOUT``, else 10 s (pgqueue.db.with_connect_timeout). Read from
the effective conninfo here; tests/integration/test_connect_timeout.py waits on a server
that never answers."""

from __future__ import annotations

import pytest
from psycopg.conninfo import conninfo_to_dict

from pgqueue import App, ConfigurationError
from pgqueue.db import (
    DEFAULT_CONNECT_TIMEOUT,
    resolve_dsn,
    server_of,
    validate_schema,
    with_connect_timeout,
)
from pgqueue.pools import AsyncPool, Pool
from pgqueue.worker.heartbeat import Heartbeat, Held


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PGCONNECT_TIMEOUT", "PGQUEUE_DSN", "DATABASE_URL", "PGHOST", "PGPORT"):
        monkeypatch.delenv(name, raising=False)


def timeout_of(dsn: str) -> str | None:
    value = conninfo_to_dict(dsn).get("connect_timeout")
    return None if value is None else str(value)


def test_the_default_is_10_seconds() -> None:
    assert DEFAULT_CONNECT_TIMEOUT == 10
    assert timeout_of(with_connect_timeout("postgresql://u@h/db")) == "10"


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        ("postgresql://u@h/db", "postgresql://u@h/db?connect_timeout=10"),
        ("postgresql://u@h/db?sslmode=disable", "postgresql://u@h/db?sslmode=disable&connect_timeout=10"),
        ("postgres://h", "postgres://h?connect_timeout=10"),
        ("host=h dbname=db", "host=h dbname=db connect_timeout=10"),
        ("", "connect_timeout=10"),
        ("postgresql://u@h/db?connect_timeout=3", "postgresql://u@h/db?connect_timeout=3"),
        ("host=h connect_timeout=0", "host=h connect_timeout=0"),  # the user's own: kept
    ],
)  # fmt: skip
def test_added_in_the_dsns_own_form(dsn: str, expected: str) -> None:
    assert with_connect_timeout(dsn) == expected
    assert with_connect_timeout(expected) == expected  # idempotent


def test_pgconnect_timeout_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGCONNECT_TIMEOUT", "4")
    assert timeout_of(with_connect_timeout("host=h")) == "4"
    assert timeout_of(with_connect_timeout("host=h connect_timeout=7")) == "7"  # DSN first


def test_a_bad_pgconnect_timeout_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGCONNECT_TIMEOUT", "soon")
    with pytest.raises(ConfigurationError, match="PGCONNECT_TIMEOUT='soon'"):
        with_connect_timeout("host=h")


def test_resolve_dsn_and_app_dsn_carry_it(monkeypatch: pytest.MonkeyPatch) -> None:
    assert timeout_of(resolve_dsn("postgresql+psycopg://u@h/db")) == "10"
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h/db")
    assert timeout_of(resolve_dsn()) == "10"
    assert timeout_of(App("host=h dbname=db").dsn) == "10"


def test_pools_carry_it() -> None:
    """App's pools, the worker's (pgqueue.worker.services) and the heartbeat sidecar's
    connection carry it."""
    pool = Pool("host=h dbname=db", open=False)
    apool = AsyncPool("host=h dbname=db", open=False)
    assert timeout_of(pool.conninfo) == timeout_of(apool.conninfo) == "10"
    beat = Heartbeat("host=h", "s", {"id": "w"}, 30.0, Held(), lambda lost: None)
    assert timeout_of(beat.config["dsn"]) == "10"  # the sidecar's connection


@pytest.mark.parametrize(
    ("dsn", "where"),
    [
        ("postgresql://u@db.example:6543/x", "db.example:6543"),
        ("host=10.0.0.1 dbname=x", "10.0.0.1:5432"),
        ("host=a,b port=1,2", "a:1, b:2"),
        ("dbname=x", "the local socket (port 5432)"),
    ],
)
def test_server_of_names_host_and_port(dsn: str, where: str) -> None:
    assert server_of(dsn) == where


@pytest.mark.parametrize("name", ["public", "pg_catalog", "pg_pgqueue", "information_schema"])
def test_public_and_system_schemas_are_refused_everywhere(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigurationError, match=f"schema '{name}' is"):
        validate_schema(name)
    with pytest.raises(ConfigurationError, match=r"use e\.g\. --schema pgqueue"):
        App("host=h", schema=name)
    monkeypatch.setenv("PGQUEUE_SCHEMA", name)
    with pytest.raises(ConfigurationError, match=f"schema '{name}' is"):
        validate_schema(None)
