"""pgqueue's pytest plugin as a user's project sees it: installed with pgqueue, the
fixtures point the project's own App at a throwaway schema, and drain/eager work."""

from __future__ import annotations

import psycopg
import pytest

pytest_plugins = ["pytester"]

APP = """
from pgqueue import App

app = App()  # the project's module-level app: PGQUEUE_DSN in production


@app.task(queue="mail")
def send(to: str) -> str:
    return f"sent to {to}"


def signup(email: str, connection=None):
    return send.options(connection=connection).defer(email)
"""

TESTS = """
import psycopg
from pgqueue.testing import assert_enqueued, assert_not_enqueued

import myapp


def made(schema):
    with open("schemas.txt", "a") as f:  # the outer test checks they were dropped
        f.write(schema + "\\n")


def test_signup_enqueues_and_the_job_runs(pgqueue_app, pgqueue_schema, pgqueue_dsn):
    made(pgqueue_schema)
    assert pgqueue_app is myapp.app and pgqueue_app.schema == pgqueue_schema
    job = myapp.signup("ada@example.com")
    assert_enqueued(myapp.send, ["ada@example.com"])
    drained = pgqueue_app.drain()
    assert drained.ok and [r.result for r in drained.runs] == ["sent to ada@example.com"]
    assert job.result(timeout=0) == "sent to ada@example.com"
    assert_not_enqueued(myapp.send)


def test_a_rolled_back_signup_leaves_no_job(pgqueue_app, pgqueue_dsn):
    with psycopg.connect(pgqueue_dsn) as conn:
        myapp.signup("bob@example.com", connection=conn)
        conn.rollback()
    assert_not_enqueued(myapp.send)


def test_each_test_gets_an_empty_schema(pgqueue_app):
    made(pgqueue_app.schema)
    assert_not_enqueued(myapp.send)


def test_eager(pgqueue_eager):
    assert pgqueue_eager is myapp.app
    assert myapp.signup("eve@example.com").result() == "sent to eve@example.com"
"""


def test_a_users_project_with_the_plugin(pytester: pytest.Pytester, pg_dsn: str) -> None:
    pytester.makepyfile(myapp=APP, test_myapp=TESTS)
    pytester.makeini("[pytest]\npgqueue_app = myapp:app\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--pgqueue-dsn={pg_dsn}")
    result.assert_outcomes(passed=4)
    made = (pytester.path / "schemas.txt").read_text().split()
    assert len(set(made)) == 2 and all(name.startswith("pgqueue_test_") for name in made)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        left = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s)", (made,)
        ).fetchall()
    assert left == []  # every throwaway schema was dropped
    assert myapp_unchanged(pytester)


def myapp_unchanged(pytester: pytest.Pytester) -> bool:
    """After the run the project's App points where it did before (checked in-process
    with use_schema, which the fixture uses)."""
    from pgqueue import App
    from pgqueue.testing import use_schema

    app = App("postgresql://elsewhere/db", schema="prod")
    with use_schema(app, "postgresql://test/db", "pgqueue_test_x"):
        assert (app.schema, app._dsn_arg) == ("pgqueue_test_x", "postgresql://test/db")
    return (app.schema, app._dsn_arg) == ("prod", "postgresql://elsewhere/db")
