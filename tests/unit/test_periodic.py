"""``@app.periodic`` (no database): declaration and its errors, and the plan of a scheduler
pass (which ticks get a job after a stall or a downtime, for both catch-up policies)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pgqueue import App, ConfigurationError, Task
from pgqueue.cron import Cron, Every
from pgqueue.periodic import Periodic, Plan

UTC = UTC
T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def secs(n: float) -> timedelta:
    return timedelta(seconds=n)


def app() -> App:
    return App("postgresql://u@h/db", schema="s")


# -- declaring ---------------------------------------------------------------------------------


def test_periodic_registers_the_task_and_the_schedule() -> None:
    a = app()

    @a.periodic(cron="*/5 * * * *", queue="reports", priority=3, max_attempts=2, args=(1,))
    def report(n: int) -> int:
        return n

    assert isinstance(report, Task)
    assert report(4) == 4  # still callable
    name = report.name
    assert a.tasks[name] is report and report.queue == "reports"
    p = a.schedules[name]
    assert (p.name, p.task, p.schedule, p.catch_up, p.grace) == (
        name,
        report,
        Cron("*/5 * * * *"),
        "latest",
        10.0,
    )
    assert {k: p.job[k] for k in ("queue", "task", "args", "kwargs", "priority")} == {
        "queue": "reports",
        "task": name,
        "args": "[1]",
        "kwargs": "{}",
        "priority": 3,
    }
    assert p.job["max_attempts"] == 2


def test_name_names_the_task_and_the_schedule() -> None:
    a = app()

    @a.periodic(every=60, name="cleanup", catch_up="none", grace=2, kwargs={"x": "y"})
    def cleanup(x: str) -> None: ...

    assert cleanup.name == "cleanup"
    assert a.schedules["cleanup"].schedule == Every(60)
    assert a.schedules["cleanup"].catch_up == "none"
    assert a.schedules["cleanup"].job["kwargs"] == '{"x":"y"}'


def test_several_schedules_for_one_task_by_stacking() -> None:
    a = app()

    @a.periodic(cron="0 * * * *", name="report-hourly", kwargs={"kind": "hourly"})
    @a.periodic(cron="0 0 * * *", name="report-daily", kwargs={"kind": "daily"}, queue="slow")
    @a.task(name="report")
    def report(kind: str) -> None: ...

    assert set(a.schedules) == {"report-hourly", "report-daily"}
    assert a.schedules["report-daily"].job["queue"] == "slow"
    assert a.schedules["report-hourly"].job["queue"] == "default"
    assert list(a.tasks) == ["report"]


def test_declaring_the_same_thing_twice_is_harmless() -> None:
    a = app()

    def f() -> None: ...

    a.periodic(every=5, name="f")(f)
    a.periodic(every=5, name="f")(f)
    assert list(a.schedules) == ["f"]


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({}, "give exactly one of cron="),
        ({"cron": "* * * * *", "every": 5}, "give exactly one of cron="),
        ({"cron": "*/0 * * * *"}, "cron '*/0 * * * *': minute step must be >= 1"),
        ({"every": 0.5}, "every must be between 1 second"),
        ({"every": 5, "tz": "UTC"}, "tz= applies to cron="),
        ({"cron": "@daily", "tz": "Nowhere/Land"}, "unknown time zone"),
        ({"every": 5, "catch_up": "all"}, "catch_up must be 'latest' or 'none', got 'all'"),
        ({"every": 5, "grace": -1}, "grace must be between 0 and 86400"),
        ({"every": 5, "grace": float("nan")}, "grace must be between"),
        ({"every": 5, "grace": "1"}, "grace must be between"),
        ({"every": 5, "cronn": "x"}, "unknown option(s) for app.periodic: cronn"),
        ({"every": 5, "args": (object(),)}, "argument 0 of task"),
        ({"every": 5, "kwargs": {"when": {1, 2}}}, "argument 'when' of task"),
        ({"every": 5, "queue": "bad queue"}, "invalid queue name"),
        ({"every": 5, "priority": 10**6}, "priority must be"),
        ({"every": 5, "name": "no spaces"}, "invalid task name"),
    ],
)
def test_bad_declarations_register_nothing(options: dict[str, Any], says: str) -> None:
    a = app()
    with pytest.raises(ConfigurationError) as info:
        a.periodic(**options)(lambda *args, **kwargs: None)
    assert says in str(info.value)
    assert a.tasks == {} and a.schedules == {}


def test_duplicate_schedule_name_is_refused() -> None:
    a = app()

    @a.periodic(every=5, name="job")
    def one() -> None: ...

    with pytest.raises(ConfigurationError, match="periodic schedule name 'job' is registered"):
        a.periodic(every=10, name="job")(one)
    with pytest.raises(ConfigurationError, match="task name 'job' is registered twice"):

        @a.periodic(every=5, name="job")
        def two() -> None: ...

    assert a.schedules["job"].schedule == Every(5)


def test_task_options_on_a_stacked_schedule_are_refused() -> None:
    a = app()

    @a.task(name="t")
    def t() -> None: ...

    with pytest.raises(ConfigurationError, match=r"give timeout to @app\.task"):
        a.periodic(every=5, name="t-5", timeout=3)(t)
    assert a.schedules == {} and list(a.tasks) == ["t"]


# -- planning a pass -----------------------------------------------------------------------------


def periodic(schedule: Cron | Every, catch_up: str = "latest", grace: float = 10.0) -> Periodic:
    a = app()
    task = a.task(name="t")(lambda: None)
    return Periodic("t", task, schedule, catch_up, grace)


def test_nothing_due() -> None:
    p = periodic(Every(60))
    assert p.plan(T0, T0 + secs(59.9)) is None


@pytest.mark.parametrize("catch_up", ["latest", "none"])
def test_on_time_ticks_all_get_jobs(catch_up: str) -> None:
    # a stall of every scheduler shorter than the grace loses no tick, whatever the policy
    p = periodic(Every(1), catch_up, grace=5)
    assert p.plan(T0, T0 + secs(3.2)) == Plan([T0 + secs(n) for n in (1, 2, 3)], T0 + secs(3))
    assert p.plan(T0, T0 + secs(1)) == Plan([T0 + secs(1)], T0 + secs(1))


def test_latest_after_downtime_enqueues_only_the_newest_missed_tick() -> None:
    p = periodic(Cron("*/5 * * * *"), "latest", grace=10)
    now = T0 + timedelta(minutes=32)  # ticks 10:05 ... 10:30 missed, 10:30 is 2 min late
    assert p.plan(T0, now) == Plan(
        [T0 + timedelta(minutes=30)],
        T0 + timedelta(minutes=30),
        (T0 + timedelta(minutes=5), T0 + timedelta(minutes=25)),
    )


def test_none_after_downtime_enqueues_nothing() -> None:
    p = periodic(Cron("*/5 * * * *"), "none", grace=10)
    now = T0 + timedelta(minutes=32)
    assert p.plan(T0, now) == Plan(
        [], T0 + timedelta(minutes=30), (T0 + timedelta(minutes=5), T0 + timedelta(minutes=30))
    )


@pytest.mark.parametrize("catch_up", ["latest", "none"])
def test_after_downtime_the_on_time_ticks_still_run(catch_up: str) -> None:
    p = periodic(Every(1), catch_up, grace=2.5)
    now = T0 + secs(60.5)  # 58, 59 and 60 are at most 2.5 s late
    assert p.plan(T0, now) == Plan(
        [T0 + secs(58), T0 + secs(59), T0 + secs(60)], T0 + secs(60), (T0 + secs(1), T0 + secs(57))
    )


def test_a_long_backlog_of_on_time_ticks_goes_in_batches() -> None:
    p = periodic(Every(1), grace=3600)
    now = T0 + secs(250)
    first = p.plan(T0, now, limit=100)
    assert first is not None and first.ticks == [T0 + secs(n) for n in range(1, 101)]
    assert first.advance_to == T0 + secs(100) and first.skipped is None
    last = p.plan(T0 + secs(200), now, limit=100)
    assert last is not None and last.ticks == [T0 + secs(n) for n in range(201, 251)]
    assert last.advance_to == T0 + secs(250)


def test_zero_grace_late_by_a_hair_is_missed() -> None:
    p = periodic(Every(60), "none", grace=0)
    assert p.plan(T0, T0 + secs(60)) == Plan([T0 + secs(60)], T0 + secs(60))
    assert p.plan(T0, T0 + secs(60.001)) == Plan([], T0 + secs(60), (T0 + secs(60), T0 + secs(60)))
