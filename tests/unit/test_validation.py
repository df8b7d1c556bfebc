"""Validation that needs no database: job specs, DSNs, schema names, SQL, retry, tasks."""

from __future__ import annotations

import itertools
import math
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pgqueue import App, ConfigurationError, InvalidJobError, JobSpec, RetryPolicy
from pgqueue.db import normalize_dsn, validate_schema
from pgqueue.jobspec import check_queue, check_task_name, to_params
from pgqueue.sql import _raw, channel_for, queries, query

PACKAGE = Path(__file__).resolve().parents[2] / "pgqueue"


# -- JobSpec / to_params ------------------------------------------------------------------


def test_valid_spec_becomes_params() -> None:
    when = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    params = to_params(
        JobSpec(
            "emails.send",
            (1, "x"),
            {"to": "a@b.c", "n": [1.5, None, True]},
            queue="emails",
            priority=-5,
            run_at=when,
            max_attempts=3,
            dedupe_key="k",
        )
    )
    assert params == {
        "queue": "emails",
        "task": "emails.send",
        "args": '[1,"x"]',
        "kwargs": '{"to":"a@b.c","n":[1.5,null,true]}',
        "priority": -5,
        "run_at": when,
        "delay": 0.0,
        "max_attempts": 3,
        "dedupe_key": "k",
        "depends_on": None,
        "group_key": None,
        "unique_for": None,
        "replace": False,
        "headers": None,
    }


def test_defaults() -> None:
    params = to_params(JobSpec("t"))
    assert (params["queue"], params["priority"], params["max_attempts"]) == ("default", 0, 20)
    assert (params["args"], params["kwargs"], params["run_at"]) == ("[]", "{}", None)


@pytest.mark.parametrize(
    "queue", ["", "1abc", "has space", "semi;colon", "quote'", "a" * 64, "é", 7]
)
def test_bad_queue_names(queue: Any) -> None:
    with pytest.raises(InvalidJobError, match="invalid queue name"):
        to_params(JobSpec("t", queue=queue))
    with pytest.raises(InvalidJobError):
        check_queue(queue)


@pytest.mark.parametrize("queue", ["default", "emails", "_x", "a.b-c_d", "Q" + "a" * 62])
def test_good_queue_names(queue: str) -> None:
    assert check_queue(queue) == queue
    assert to_params(JobSpec("t", queue=queue))["queue"] == queue


@pytest.mark.parametrize("name", ["", "9lives", "has space", "drop;table", "a" * 201, None, 3])
def test_bad_task_names(name: Any) -> None:
    with pytest.raises(InvalidJobError, match="invalid task name"):
        to_params(JobSpec(name))
    with pytest.raises(InvalidJobError):
        check_task_name(name)


@pytest.mark.parametrize("name", ["t", "emails.send", "pkg.mod:func", "a-b_c", "x" * 200])
def test_good_task_names(name: str) -> None:
    assert check_task_name(name) == name


@pytest.mark.parametrize("priority", [-32769, 32768, 10**9, 1.5, "1", True])
def test_priority_out_of_range(priority: Any) -> None:
    with pytest.raises(InvalidJobError, match="priority"):
        to_params(JobSpec("t", priority=priority))


@pytest.mark.parametrize("priority", [-32768, 0, 32767])
def test_priority_limits_ok(priority: int) -> None:
    assert to_params(JobSpec("t", priority=priority))["priority"] == priority


@pytest.mark.parametrize("max_attempts", [0, -1, 1.0, True, "3"])
def test_bad_max_attempts(max_attempts: Any) -> None:
    with pytest.raises(InvalidJobError, match="max_attempts"):
        to_params(JobSpec("t", max_attempts=max_attempts))


@pytest.mark.parametrize("delay", [-1, -0.001, math.nan, math.inf, "5", True])
def test_bad_delay(delay: Any) -> None:
    with pytest.raises(InvalidJobError, match="delay"):
        to_params(JobSpec("t", delay=delay))


def test_good_delay() -> None:
    assert to_params(JobSpec("t", delay=0))["delay"] == 0.0
    assert to_params(JobSpec("t", delay=2))["delay"] == 2.0


def test_naive_run_at_rejected() -> None:
    with pytest.raises(InvalidJobError, match="timezone-aware"):
        to_params(JobSpec("t", run_at=datetime(2030, 1, 1)))


def test_run_at_must_be_datetime() -> None:
    with pytest.raises(InvalidJobError, match="run_at"):
        to_params(JobSpec("t", run_at="2030-01-01T00:00:00Z"))  # type: ignore[arg-type]


def test_run_at_and_delay_together_rejected() -> None:
    with pytest.raises(InvalidJobError, match="run_at or delay"):
        to_params(JobSpec("t", run_at=datetime.now(UTC), delay=5))


@pytest.mark.parametrize("key", ["", "k" * 501, 5])
def test_bad_dedupe_key(key: Any) -> None:
    with pytest.raises(InvalidJobError, match="dedupe_key"):
        to_params(JobSpec("t", dedupe_key=key))


@pytest.mark.parametrize(
    ("args", "kwargs", "named", "why"),
    [
        ((1, math.nan), {}, "argument 1", "NaN"),
        ((math.inf,), {}, "argument 0", "NaN and infinity"),
        ((), {"when": complex(1, 2)}, "argument 'when'", "complex"),
        (({1, 2},), {}, "argument 0", "set"),
        ((), {"tags": frozenset({"a"})}, "argument 'tags'", "frozenset"),
        ((), {"m": {1: "a"}}, "argument 'm'", "dict key 1"),
        (({"deep": [{2.5: "x"}]},), {}, "argument 0", "dict key 2.5"),
        ((), {"m": {(1, 2): "a"}}, "argument 'm'", "tuple"),
        ((bytearray(b"bytes"),), {}, "argument 0", "bytearray"),
        ((), {"d": range(3)}, "argument 'd'", "range"),
        ((), {"obj": object()}, "argument 'obj'", "object"),
    ],
)
def test_non_json_arguments_named(
    args: tuple[Any, ...], kwargs: dict[str, Any], named: str, why: str
) -> None:
    with pytest.raises(InvalidJobError) as info:
        to_params(JobSpec("reports.build", args, kwargs))
    message = str(info.value)
    assert named in message
    assert why in message
    assert "reports.build" in message


def test_none_dict_key_rejected() -> None:
    with pytest.raises(InvalidJobError, match="argument 'm'"):
        to_params(JobSpec("t", (), {"m": {None: 1}}))


def test_args_must_be_a_sequence_and_kwargs_a_mapping() -> None:
    with pytest.raises(InvalidJobError, match="args"):
        to_params(JobSpec("t", "abc"))
    with pytest.raises(InvalidJobError, match="args"):
        to_params(JobSpec("t", 5))  # type: ignore[arg-type]
    with pytest.raises(InvalidJobError, match="kwargs"):
        to_params(JobSpec("t", (), [("a", 1)]))  # type: ignore[arg-type]
    with pytest.raises(InvalidJobError, match="names"):
        to_params(JobSpec("t", (), {1: "a"}))  # type: ignore[dict-item]


def test_json_arguments_accepted_unicode_kept() -> None:
    params = to_params(JobSpec("t", ("héllo", 2**62, -0.5, None, [], {}), {"ключ": "✓"}))
    assert params["args"] == '["héllo",4611686018427387904,-0.5,null,[],{}]'
    assert params["kwargs"] == '{"ключ":"✓"}'


def test_invalid_job_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        to_params(JobSpec("t", (math.nan,)))


def test_app_enqueue_rejects_unknown_option_before_connecting() -> None:
    # A DSN that cannot be reached: validation must fail first, without connecting.
    app = App("postgresql://nobody@127.0.0.1:1/none", schema="pgqueue", strict_tasks=False)
    with pytest.raises(InvalidJobError, match="argument 0"):
        app.enqueue("t", [{1, 2}])
    with pytest.raises(InvalidJobError, match="unknown enqueue option"):
        app._spec("t", None, None, colour="red")
    assert app._pool is None


# -- DSN -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql+psycopg://u:p@h:5432/db", "postgresql://u:p@h:5432/db"),
        ("postgresql+psycopg2://u@h/db", "postgresql://u@h/db"),
        ("postgres+asyncpg://u@h/db", "postgres://u@h/db"),
        ("postgresql://u@h/db?sslmode=disable", "postgresql://u@h/db?sslmode=disable"),
        ("  host=h port=5432 dbname=db  ", "host=h port=5432 dbname=db"),
        ("dbname=db", "dbname=db"),
    ],
)
def test_normalize_dsn_accepts(given: str, expected: str) -> None:
    assert normalize_dsn(given) == expected


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("mysql://u@h/db", "mysql"),
        ("sqlite:///x.db", "sqlite"),
        ("garbage", "malformed DSN"),
        ("host=h port", "malformed DSN"),
        ("postgresql://[::1", "malformed DSN"),
        ("", "empty"),
        ("   ", "empty"),
    ],
)
def test_normalize_dsn_rejects(given: str, says: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        normalize_dsn(given)
    assert says in str(info.value)
    assert "\n" not in str(info.value)


# -- schema names --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["pgqueue", "billing_jobs", "_x", "a1", "a" * 50])
def test_validate_schema_accepts(name: str) -> None:
    assert validate_schema(name) == name


@pytest.mark.parametrize(
    "name", ["", "Pgqueue", "1abc", "has space", 'q"uote', "a-b", "a.b", "a" * 51, "drop;"]
)
def test_validate_schema_rejects(name: str) -> None:
    with pytest.raises(ConfigurationError, match="invalid schema name"):
        validate_schema(name)
    with pytest.raises(ConfigurationError):
        App("dbname=x", schema=name)


def test_validate_schema_default_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGQUEUE_SCHEMA", raising=False)
    assert validate_schema(None) == "pgqueue"
    monkeypatch.setenv("PGQUEUE_SCHEMA", "from_env")
    assert validate_schema(None) == "from_env"
    assert validate_schema("explicit") == "explicit"
    monkeypatch.setenv("PGQUEUE_SCHEMA", "Bad-Name")
    with pytest.raises(ConfigurationError):
        validate_schema(None)


# -- SQL loader ----------------------------------------------------------------------------


def test_every_query_loads_and_is_filled_in() -> None:
    names = set(_raw())
    assert {
        "job_insert",
        "job_insert_many",
        "job_find_unfinished_by_dedupe_key",
        "schema_inspect",
        "schema_revision",
        "queue_stats_list",
    } <= names
    filled = queries("my_schema")
    assert set(filled) == names
    for name, sql in filled.items():
        assert sql.strip(), name
        assert query("my_schema", name) == sql
        assert "{schema}" not in sql and "{channel}" not in sql, name
        assert not re.search(r"\{[a-z_]+\}", sql), name
        assert not sql.rstrip().endswith(";"), name
    assert '"my_schema".jobs' in filled["job_insert"]


def test_both_unique_inserts_find_a_recent_holder_the_same_way() -> None:
    """job_insert_deduped and enqueue_replacing (migration 0007, what job_insert_replacing
    calls) each carry the unique_for lookup; they drifted once (replace still read jobs
    after succeeded jobs moved to succeeded_jobs). The function names its parameters
    where the query has placeholders; otherwise the two read the same."""
    sql = query("s", "job_insert_deduped")
    deduped = sql[sql.index("WITH recent AS (") : sql.index("\n), ")]
    ddl = (PACKAGE / "migrations/versions/0007_roles.py").read_text()
    replacing = ddl[ddl.index("WITH recent AS (") : ddl.index("\n    ), upserted")]
    as_function = (
        deduped.replace('"s".', "{s}.")
        .replace("%(unique_for)s::float8", "enqueue_replacing.unique_for")
        .replace("%(dedupe_key)s", "enqueue_replacing.dedupe_key")
    )
    assert " ".join(as_function.split()) == " ".join(replacing.split())
    assert '"s".all_jobs' in deduped
    assert "enqueue_replacing(" in query("s", "job_insert_replacing")


def test_channel_is_filled_in() -> None:
    assert channel_for("abc") == "abc_jobs"
    with_channel = [sql for sql in queries("abc").values() if "pg_notify" in sql]
    assert with_channel, "some query notifies"
    channels = set()
    for sql in with_channel:
        assert "{channel}" not in sql and "{done_channel}" not in sql
        channels |= set(re.findall(r"pg_notify\('([^']*)'", sql))
    # queue names for workers; ids of finished jobs for result waiters
    assert channels == {"abc_jobs", "abc_done"}


def test_unknown_query_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        query("pgqueue", "no_such_query")


def test_every_query_name_used_in_the_package_exists() -> None:
    used: set[str] = set()
    pattern = re.compile(r"""query\(\s*(?:[\w.]+\s*,\s*)?["']([a-z_][a-z0-9_]*)["']""")
    for path in PACKAGE.rglob("*.py"):
        used |= set(pattern.findall(path.read_text(encoding="utf-8")))
    assert used, "the scan found the query calls"
    missing = sorted(used - set(_raw()))
    assert not missing, f"code uses queries that queries.sql lacks: {missing}"


# -- RetryPolicy ---------------------------------------------------------------------------


def test_retry_delays_grow_and_are_capped_without_jitter() -> None:
    policy = RetryPolicy(base=1.0, factor=2.0, max_delay=60.0, jitter=0.0)
    delays = [policy.delay(n) for n in range(1, 12)]
    assert delays[:7] == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0]
    assert all(d == 60.0 for d in delays[6:])
    assert all(a <= b for a, b in itertools.pairwise(delays))
    assert policy.delay(0) == 1.0
    assert policy.delay(10_000) == 60.0  # no overflow for huge counts


def test_retry_jitter_stays_within_bounds() -> None:
    policy = RetryPolicy(base=10.0, factor=3.0, max_delay=1000.0, jitter=0.25)
    for failures in range(1, 10):
        full = min(10.0 * 3.0 ** (failures - 1), 1000.0)
        for _ in range(50):
            d = policy.delay(failures)
            assert 0.75 * full <= d <= full
    assert max(policy.delay(50) for _ in range(100)) <= 1000.0


@pytest.mark.parametrize(
    "kwargs",
    [{"base": -1.0}, {"factor": 0.5}, {"max_delay": -1.0}, {"jitter": 1.5}, {"jitter": -0.1}],
)
def test_retry_policy_rejects_bad_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)


# -- task registration ---------------------------------------------------------------------


def _app() -> App:
    return App("postgresql://nobody@127.0.0.1:1/none", schema="pgqueue")


def test_task_registration_defaults_and_options() -> None:
    app = _app()

    @app.task
    def plain(x: int) -> int:
        return x + 1

    @app.task(name="emails.send", queue="emails", priority=5, max_attempts=3, timeout=2.5)
    async def send(to: str) -> None:
        return None

    assert plain.name.endswith(
        "test_validation.test_task_registration_defaults_and_options.locals.plain"
    )
    assert plain(1) == 2
    assert (plain.queue, plain.priority, plain.max_attempts, plain.timeout) == (
        "default",
        0,
        20,
        None,
    )
    assert not plain.is_async
    assert send.is_async
    assert (send.queue, send.priority, send.max_attempts, send.timeout) == ("emails", 5, 3, 2.5)
    assert app.tasks == {plain.name: plain, "emails.send": send}
    spec = send.spec("a@b.c", cc=None)
    assert (spec.task, tuple(spec.args), dict(spec.kwargs), spec.queue) == (
        "emails.send",
        ("a@b.c",),
        {"cc": None},
        "emails",
    )


def test_duplicate_task_name_rejected() -> None:
    app = _app()

    @app.task(name="dup")
    def first() -> None: ...

    with pytest.raises(ConfigurationError, match="registered twice"):

        @app.task(name="dup")
        def second() -> None: ...

    assert app.tasks["dup"].func is first.func


def test_registering_the_same_function_twice_is_harmless() -> None:
    app = _app()

    def f() -> None: ...

    a = app.task(name="same")(f)
    b = app.task(name="same")(f)
    assert a.func is b.func and list(app.tasks) == ["same"]


@pytest.mark.parametrize("timeout", [0, -1, -0.5, math.nan])
def test_bad_timeout_rejected(timeout: float) -> None:
    app = _app()
    with pytest.raises(ConfigurationError, match="timeout"):
        app.task(name="t", timeout=timeout)(lambda: None)
    assert app.tasks == {}


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"name": "bad name"}, "invalid task name"),
        ({"queue": "bad queue"}, "invalid queue name"),
        ({"priority": 99999}, "priority"),
        ({"max_attempts": 0}, "max_attempts"),
    ],
)
def test_bad_task_options_rejected(options: dict[str, Any], says: str) -> None:
    app = _app()
    with pytest.raises(ConfigurationError, match=says):
        app.task(**({"name": "t"} | options))(lambda: None)
    assert app.tasks == {}


def test_bad_pool_size_rejected() -> None:
    with pytest.raises(ConfigurationError, match="pool_max_size"):
        App("dbname=x", pool_max_size=0)
