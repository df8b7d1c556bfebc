"""Every connection pgqueue opens says in pg_stat_activity what it is and whose it is."""

from __future__ import annotations

from typing import Any

import psycopg

from pgqueue import App
from pgqueue.db import application_name
from tests.helpers import wait_until
from tests.worker.inproc import running


def _names(conn: psycopg.Connection[Any], like: str) -> list[str]:
    rows = conn.execute(
        "SELECT application_name FROM pg_stat_activity WHERE application_name LIKE %s "
        "ORDER BY 1",
        (like,),
    ).fetchall()
    return [r[0] for r in rows]


def test_a_workers_connections_name_pgqueue_their_role_and_the_worker(
    qapp: App, conn: psycopg.Connection[Any]
) -> None:
    with running(qapp) as worker:
        qapp.enqueue("noop")  # the App's own pool: a producer connection
        wait_until(
            lambda: {"claim", "maintenance", "heartbeat", "listen"}
            <= {n.split(" ")[1] for n in _names(conn, f"% {worker.id}")},
            what="the worker's connections named",
        )
        mine = _names(conn, f"% {worker.id}")
        assert all(n.startswith("pgqueue ") and n.endswith(worker.id) for n in mine)
        assert "pgqueue producer" in _names(conn, "pgqueue producer")


def test_the_dsns_own_application_name_comes_first() -> None:
    dsn = "postgresql://u@h/db?application_name=billing"
    assert application_name(dsn, "claim", "host:1:ab") == "billing (pgqueue claim host:1:ab)"
    assert application_name("host=h", "producer") == "pgqueue producer"
    long = application_name("host=h", "claim", "x" * 100)
    assert len(long.encode()) == 63 and long.startswith("pgqueue claim x")
