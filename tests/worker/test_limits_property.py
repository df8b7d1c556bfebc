"""Property tests of the validation contract over the three ways a job gets in (the Python
API, ``pgqueue enqueue``, the SQL ``enqueue()``): any input is either refused with
nothing written, or reaches a real worker's handler with exactly the arguments given (as
JSON would: tuples come back as lists; numbers compared as the decimals JSON carries,
since jsonb stores numbers as ``numeric``).

Fixed seed (derandomize) and a few hundred examples in all, so CI is stable and fast.
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pgqueue import App, InvalidJobError, JobSpec
from pgqueue.worker import JobContext
from tests.helpers import wait_until
from tests.integration.test_cli import run_cli
from tests.worker.inproc import running

Conn = psycopg.Connection[Any]

SETTINGS = settings(
    max_examples=120,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def nested(levels: int) -> Any:
    value: Any = []
    for _ in range(levels - 1):
        value = [value]
    return value


# Any code point, surrogates included (hypothesis leaves them out by default), plus NUL.
CHARS = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=())
CLEAN = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=8)
TEXT = st.one_of(
    CLEAN,
    CLEAN,
    st.text(CHARS, max_size=8),
    st.sampled_from(["", "\x00", "a\x00b", "\ud800", "x\udfff", "\\u0000", "😀", "\n"]),
    st.sampled_from([100, 262_000, 262_200, 300_000]).map(lambda n: "x" * n),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    TEXT,
)
KEYS = st.one_of(TEXT, st.integers(0, 3), st.none())
VALUES = st.one_of(
    st.recursive(
        SCALARS,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.tuples(inner),
            st.dictionaries(KEYS, inner, max_size=4),
        ),
        max_leaves=12,
    ),
    st.sampled_from([60, 64, 65, 70, 10_000]).map(nested),
)
ARGS = st.one_of(
    st.lists(VALUES, max_size=3),
    st.lists(SCALARS, max_size=3),
    st.lists(SCALARS, max_size=3),
    st.tuples(VALUES),
    TEXT,
    st.dictionaries(st.text(max_size=3), VALUES, max_size=2),
    st.sets(st.integers(), max_size=2),
    st.integers(),
)
KWARGS = st.one_of(
    st.dictionaries(KEYS, VALUES, max_size=3),
    st.dictionaries(CLEAN, SCALARS, max_size=3),
    st.dictionaries(CLEAN, SCALARS, max_size=3),
    st.lists(VALUES, max_size=2),
    st.none(),
)
TASKS = st.sampled_from(["echo"] * 8 + ["echo\n", "ec ho", "echo\x00", "\u00e9cho"])
QUEUES = st.sampled_from(["default"] * 6 + ["q1"] * 2 + ["q1\n", "bad queue", "x" * 64, "q\x00"])
DELAYS = st.one_of(
    st.none(),
    st.sampled_from([0.0, -1.0, float("inf"), float("nan"), 1e300, 3.2e9]),
)
KEYS_OPT = st.one_of(st.none(), st.none(), st.none(), TEXT)


def as_json(value: Any) -> Any:
    """What a worker should receive for ``value``: JSON's shapes, numbers as decimals."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items()}
    return [as_json(v) for v in value]


@pytest.fixture
def echo_app(pg_dsn: str, schema: str) -> Any:
    app = App(pg_dsn, schema=schema)
    seen: dict[int, Any] = {}

    @app.task(name="echo", pass_context=True, max_attempts=1)
    def echo(ctx: JobContext, *args: Any, **kwargs: Any) -> None:
        seen[ctx.job_id] = (list(args), kwargs)

    yield app, seen
    app.close()


def count(conn: Conn, schema: str) -> int:
    row = conn.execute(f'SELECT count(*) FROM "{schema}".all_jobs').fetchone()
    assert row is not None
    return int(row[0])


def arrives(seen: dict[int, Any], job_id: int, args: Any, kwargs: Any) -> None:
    seen.setdefault(-1, []).append(job_id)  # the tally of accepted jobs (-1 is no job id)
    wait_until(lambda: job_id in seen, timeout=20, what=f"job {job_id} ran")
    got_args, got_kwargs = seen.pop(job_id)
    assert as_json(got_args) == as_json(list(args))
    assert as_json(got_kwargs) == as_json(dict(kwargs))


async def enqueue_async(app: App, ex: dict[str, Any], opts: dict[str, Any]) -> int:
    """enqueue_async on an App of its own (its pool belongs to this event loop)."""
    other = App(app.dsn, schema=app.schema, strict_tasks=False)
    try:
        return int(await other.enqueue_async(ex["task"], ex["args"], ex["kwargs"], **opts))
    finally:
        await other.aclose()


def test_python_api_refuses_or_round_trips(echo_app: Any, conn: Conn, schema: str) -> None:
    app, seen = echo_app

    @SETTINGS
    @given(
        path=st.sampled_from(["enqueue", "async", "many", "batch", "connection"]),
        task=TASKS,
        args=ARGS,
        kwargs=KWARGS,
        queue=QUEUES,
        delay=DELAYS,
        dedupe_key=KEYS_OPT,
        group_key=KEYS_OPT,
    )
    def check(
        path: str,
        task: str,
        args: Any,
        kwargs: Any,
        queue: str,
        delay: float | None,
        dedupe_key: str | None,
        group_key: str | None,
    ) -> None:
        # Every delay above 0 that DELAYS draws is refused (past 100 years or not finite).
        before = count(conn, schema)
        ex = {"task": task, "args": args, "kwargs": kwargs}
        opts: dict[str, Any] = {
            "queue": queue, "delay": delay, "dedupe_key": dedupe_key, "group_key": group_key
        }  # fmt: skip
        if opts["dedupe_key"] is not None:
            opts["dedupe_key"] += str(before)  # a fresh key: a held one would return the old id
        try:
            if path == "enqueue":
                ids = [int(app.enqueue(ex["task"], ex["args"], ex["kwargs"], **opts))]
            elif path == "async":
                ids = [asyncio.run(enqueue_async(app, ex, opts))]
            elif path == "many":
                spec = JobSpec(ex["task"], ex["args"], ex["kwargs"], **opts)
                ids = [int(j) for j in app.enqueue_many([spec, JobSpec("echo", [1])])]
            elif path == "batch":
                items = [ex["args"], ex["kwargs"], {"ok": 1}]
                ids = [
                    int(j)
                    for j in app.enqueue_batch(
                        ex["task"], items, queue=opts["queue"], group_key=opts["group_key"]
                    )
                ]
            else:
                with psycopg.connect(app.dsn) as tx:
                    ids = [int(app.enqueue(ex["task"], ex["args"], ex["kwargs"], connection=tx))]
        except InvalidJobError:
            assert count(conn, schema) == before
            return
        if path == "batch":
            for job_id, item in zip(ids, [ex["args"], ex["kwargs"], {"ok": 1}], strict=True):
                is_kw = isinstance(item, dict)
                arrives(seen, job_id, [] if is_kw else item, item if is_kw else {})
            return
        arrives(seen, ids[0], ex["args"], ex["kwargs"] or {})

    with running(app, queues=["default", "q1", "x" * 63]):
        check()
    assert len(seen.get(-1, ())) >= 10, "too few examples were accepted to test the round trip"


def _text(value: Any, ascii_only: bool) -> str:
    try:
        return json.dumps(value, ensure_ascii=ascii_only)
    except (TypeError, ValueError, RecursionError):
        return "[" * 10_000 + "]" * 10_000  # not JSON-able here: send a deep one instead


def test_cli_and_sql_refuse_or_round_trip(
    echo_app: Any, conn: Conn, schema: str, pg_dsn: str
) -> None:
    app, seen = echo_app

    @SETTINGS
    @given(
        surface=st.sampled_from(["cli", "sql"]),
        task=TASKS,
        value=st.one_of(
            st.lists(VALUES, max_size=3),
            st.lists(SCALARS, max_size=3),
            st.dictionaries(TEXT, VALUES, max_size=3),
            st.dictionaries(CLEAN, SCALARS, max_size=3),
        ),
        queue=QUEUES,
        ascii_only=st.booleans(),
    )
    def check(surface: str, task: str, value: Any, queue: str, ascii_only: bool) -> None:
        before = count(conn, schema)
        text = _text(value, ascii_only or surface == "sql")
        option = "--args" if text.startswith("[") else "--kwargs"
        job_id = None
        if surface == "cli":
            code, out, err = run_cli(
                "--dsn", pg_dsn, "--schema", schema, "enqueue", task, option, text,
                "--queue", queue,
            )  # fmt: skip
            if code == 0:
                job_id = int(out)
            else:
                assert code == 1 and out == "" and len(err.strip().splitlines()) == 1, err
        else:
            try:
                row = conn.execute(
                    f'SELECT "{schema}".enqueue(%s, %s::jsonb, %s)', (task, text, queue)
                ).fetchone()
                assert row is not None
                job_id = int(row[0])
            except (psycopg.errors.DataError, psycopg.errors.IntegrityError):
                pass  # the server's (22xxx: 22023 is enqueue()'s own, 23514 a CHECK) or psycopg's
            except psycopg.errors.ProgramLimitExceeded:  # the server's own JSON parser, too deep
                pass
            except UnicodeEncodeError:  # a lone surrogate is not even sent
                pass
        if job_id is None:
            assert count(conn, schema) == before
            return
        parsed = json.loads(text)
        is_kw = isinstance(parsed, dict)
        arrives(seen, job_id, [] if is_kw else parsed, parsed if is_kw else {})

    with running(app, queues=["default", "q1", "x" * 63]):
        check()
    assert len(seen.get(-1, ())) >= 10, "too few examples were accepted to test the round trip"
