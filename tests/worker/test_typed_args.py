"""Typed arguments through a real worker: enqueue -> jsonb -> handler, and admin.jobs()."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg

from pgqueue import App
from tests.worker.inproc import running
from tests.worker.procs import wait_state

Conn = psycopg.Connection[Any]

EVAL = uuid.UUID("6f1c2a8e-0b7d-4c1e-9a43-2d5e8f0a1b2c")
AT = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)


def test_typed_arguments_reach_the_handler_as_they_were(app: App, conn: Conn, schema: str) -> None:
    seen: list[tuple[Any, ...]] = []

    @app.task(name="score")
    def score(eval_id: uuid.UUID, at: datetime, *, day: date, cost: Decimal) -> str:
        seen.append((eval_id, at, day, cost))
        return f"{eval_id}:{cost}"

    @app.task(name="ascore")
    async def ascore(window: timedelta, blob: bytes) -> int:
        seen.append((window, blob))
        return len(blob)

    j1 = score.delay(EVAL, AT, day=date(2026, 3, 4), cost=Decimal("0.10"))
    j2 = ascore.apply_async((timedelta(hours=36), b"\x00\x01"))
    [j3] = app.enqueue_batch(ascore, [[timedelta(0), b"abc"]])
    # what is stored is plain JSON any client can read
    stored = conn.execute(f'SELECT args, kwargs FROM "{schema}".jobs WHERE id = %s', (j1,))
    args, kwargs = stored.fetchone() or ((), {})
    assert args[0] == {"__pgqueue__": "uuid", "v": str(EVAL)}
    assert kwargs["cost"] == {"__pgqueue__": "decimal", "v": "0.10"}
    # and admin.jobs() gives the arguments back typed
    listed = {row["id"]: row for row in app.admin.jobs()}
    assert listed[j1]["args"] == [EVAL, AT] and listed[j1]["kwargs"]["cost"] == Decimal("0.10")
    assert listed[j2]["args"] == [timedelta(hours=36), b"\x00\x01"]
    assert app.admin.jobs(decode_types=False)[-1]["args"][0]["__pgqueue__"] == "uuid"

    with running(app):
        assert j1.result(timeout=30) == f"{EVAL}:0.10"
        assert j2.result(timeout=30) == 2
        assert j3.result(timeout=30) == 3
    assert sorted(seen, key=repr) == sorted(
        [
            (EVAL, AT, date(2026, 3, 4), Decimal("0.10")),
            (timedelta(hours=36), b"\x00\x01"),
            (timedelta(0), b"abc"),
        ],
        key=repr,
    )


def test_a_tag_no_worker_knows_fails_alone_from_sql(app: App, conn: Conn, schema: str) -> None:
    @app.task(name="echo")
    def echo(value: Any) -> str:
        return repr(value)

    bad = conn.execute(
        f"SELECT \"{schema}\".enqueue('echo', "
        """'[{"__pgqueue__": "never.registered", "v": 1}]'::jsonb)"""
    ).fetchone()
    good = conn.execute(
        f"SELECT \"{schema}\".enqueue('echo', "
        """'[{"__pgqueue__": "decimal", "v": "1.5"}]'::jsonb)"""
    ).fetchone()
    assert bad is not None and good is not None
    with running(app):
        row = wait_state(conn, schema, bad[0], "failed")
        assert app.job(good[0]).result(timeout=30) == "Decimal('1.5')"
    assert row["errors"][0]["kind"] == "undecodable"
    assert "unknown typed value 'never.registered'" in row["errors"][0]["message"]
