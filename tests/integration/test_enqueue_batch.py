"""The uniform bulk path: ``App.enqueue_batch`` / ``Task.defer_many`` (one COPY)."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from pgqueue import App, InvalidJobError, JobSpec

Conn = psycopg.Connection[tuple[object, ...]]


def _rows(conn: Conn, schema: str, ids: list[int]) -> list[tuple[object, ...]]:
    return conn.execute(
        "SELECT id, queue, task, args, kwargs, priority, max_attempts, state "
        f'FROM "{schema}".all_jobs '
        "WHERE id = ANY(%s) ORDER BY id",
        (ids,),
    ).fetchall()


def test_batch_writes_every_item_in_order_with_shared_options(
    app: App, conn: Conn, schema: str
) -> None:
    @app.task(name="emails.send", queue="emails", priority=3, max_attempts=4)
    def send(to: str, subject: str = "") -> None: ...

    items = [{"to": f"u{i}@b.c"} for i in range(5000)] + [["x@y.z", "hi"], ("t@u.v",)]
    ids = send.defer_many(items)
    assert len(ids) == 5002 and ids == sorted(ids)
    rows = _rows(conn, schema, ids)
    assert [r[0] for r in rows] == ids
    assert rows[0][1:] == ("emails", "emails.send", [], {"to": "u0@b.c"}, 3, 4, "queued")
    assert rows[-2][3:5] == (["x@y.z", "hi"], {})
    assert rows[-1][3:5] == (["t@u.v"], {})
    ids2 = app.enqueue_batch("emails.send", [{"to": "a"}], queue="other", priority=-1)
    assert _rows(conn, schema, ids2)[0][1] == "other"


def test_batch_round_trips_awkward_text(app: App, conn: Conn, schema: str) -> None:
    app.strict_tasks = False
    weird = {"s": 'back\\slash \t tab \n newline "quote" é \u2028', "n": [1.5, None, True]}
    ids = app.enqueue_batch("t.x", [weird, ["\\\\"]])
    rows = _rows(conn, schema, ids)
    assert rows[0][4] == weird
    assert rows[1][3] == ["\\\\"]


@pytest.mark.parametrize(
    "bad, words",
    [
        ([{"ok": 1}, 7], "item 1"),
        ([{"when": float("nan")}], "NaN"),
        ([{"k": {1: 2}}], "dict key 1"),
        ([["\x00"]], "NUL"),
    ],
)
def test_bad_item_raises_and_writes_nothing(
    app: App, conn: Conn, schema: str, bad: list[object], words: str
) -> None:
    app.strict_tasks = False
    with pytest.raises(InvalidJobError, match=words):
        app.enqueue_batch("t.x", bad)
    assert conn.execute(f'SELECT count(*) FROM "{schema}".all_jobs').fetchone() == (0,)


def test_bad_options_raise_before_anything_is_written(app: App, conn: Conn, schema: str) -> None:
    app.strict_tasks = False
    with pytest.raises(InvalidJobError, match="queue"):
        app.enqueue_batch("t.x", [{}], queue="not a queue")
    with pytest.raises(InvalidJobError, match="priority"):
        app.enqueue_batch("t.x", [{}], priority=10**6)
    with pytest.raises(InvalidJobError, match="unknown task"):
        App(app._dsn_arg, schema=schema).enqueue_batch("nope", [{}])
    assert conn.execute(f'SELECT count(*) FROM "{schema}".all_jobs').fetchone() == (0,)


def test_batch_joins_the_callers_transaction(
    app: App, pg_dsn: str, conn: Conn, schema: str
) -> None:
    app.strict_tasks = False
    with psycopg.connect(pg_dsn) as own:
        ids = app.enqueue_batch("t.x", [{"i": 1}, {"i": 2}], connection=own)
        own.rollback()
    assert _rows(conn, schema, ids) == []
    engine = create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(pg_dsn))
    with Session(engine) as session:
        ids = app.enqueue_batch("t.x", [{"i": 3}], connection=session)
        session.commit()
    assert [r[4] for r in _rows(conn, schema, ids)] == [{"i": 3}]
    engine.dispose()


def test_empty_batch_is_a_no_op(app: App) -> None:
    app.strict_tasks = False
    assert app.enqueue_batch("t.x", []) == []
    assert app.enqueue_many([JobSpec("t.x")][:0]) == []


def test_sqlalchemy_commit_as_you_go_keeps_every_batch(
    app: App, pg_dsn: str, conn: Conn, schema: str
) -> None:
    """A fresh SQLAlchemy connection whose first statement is ours: SQLAlchemy must know
    its transaction began, or commit() does nothing and the pool rolls the COPY back."""
    app.strict_tasks = False
    engine = create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(pg_dsn))
    written: list[int] = []
    for n in range(3):
        with engine.connect() as sa_conn:
            written += app.enqueue_batch("t.x", [{"n": n}], connection=sa_conn)
            written += app.enqueue_many([JobSpec("t.x", [n])], connection=sa_conn)
            sa_conn.commit()
    engine.dispose()
    assert len(_rows(conn, schema, written)) == 6
