"""Cron and interval schedules (no database): parsing, errors, next/previous ticks across
month, year and daylight-saving boundaries, the day-of-month/day-of-week rule, Feb 29."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from pgqueue import ConfigurationError
from pgqueue.cron import Cron, Every, make_schedule, parse_schedule

UTC = UTC


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def ticks(schedule: Cron | Every, start: datetime, n: int) -> list[datetime]:
    out = []
    for _ in range(n):
        start = schedule.next_after(start)
        out.append(start)
    return out


# -- parsing ---------------------------------------------------------------------------------


def test_fields_parse_to_their_values() -> None:
    c = Cron("*/15 1-10/3 1,15,31 jan,JUL-aug 7")
    assert c.minutes == (0, 15, 30, 45)
    assert c.hours == (1, 4, 7, 10)
    assert c.days == (1, 15, 31)
    assert c.months == (1, 7, 8)
    assert c.weekdays == (0,)  # 7 is Sunday, like 0


def test_names_ranges_steps_and_open_steps() -> None:
    assert Cron("0 0 * * mon-fri").weekdays == (1, 2, 3, 4, 5)
    assert Cron("0 0 * * 5-7").weekdays == (0, 5, 6)
    assert Cron("0 0 * * */2").weekdays == (0, 2, 4, 6)
    assert Cron("5/20 * * * *").minutes == (5, 25, 45)  # a/n: from a to the end
    assert Cron("0 */90 * * *").hours == (0,)  # a step past the range is allowed
    assert Cron("0 0 * * sun,0,7").weekdays == (0,)


@pytest.mark.parametrize(
    ("alias", "same_as"),
    [
        ("@hourly", "0 * * * *"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
        ("@yearly", "0 0 1 1 *"),
        ("@ANNUALLY", "0 0 1 1 *"),
    ],
)
def test_aliases(alias: str, same_as: str) -> None:
    a, b = Cron(alias), Cron(same_as)
    assert (a.minutes, a.hours, a.days, a.months, a.weekdays) == (
        b.minutes,
        b.hours,
        b.days,
        b.months,
        b.weekdays,
    )
    start = utc(2026, 11, 26, 10, 17)
    assert ticks(a, start, 3) == ticks(b, start, 3)


@pytest.mark.parametrize(
    ("expr", "says"),
    [
        ("*/0 * * * *", "cron '*/0 * * * *': minute step must be >= 1"),
        ("60 * * * *", "minute value 60 is out of range 0-59"),
        ("* 24 * * *", "hour value 24 is out of range 0-23"),
        ("* * 0 * *", "day-of-month value 0 is out of range 1-31"),
        ("* * 32 * *", "day-of-month value 32 is out of range 1-31"),
        ("* * * 13 *", "month value 13 is out of range 1-12"),
        ("* * * * 8", "day-of-week value 8 is out of range 0-7"),
        ("* * * foo *", "month value 'foo' is not a number or a name (jan, "),
        ("x * * * *", "minute value 'x' is not a number"),
        ("* * * * mon-x", "day-of-week value 'x' is not a number or a name (sun, "),
        ("5-1 * * * *", "minute range '5-1' is reversed"),
        ("0 0 * * sat-sun", "day-of-week range 'sat-sun' is reversed (write sat-sun as 6-7)"),
        ("1,,2 * * * *", "minute field '1,,2' has an empty list item"),
        ("*/x * * * *", "minute step 'x' is not a number"),
        ("*/-1 * * * *", "minute step '-1' is not a number"),
        ("-5 * * * *", "minute range '-5' needs two values"),
        ("/5 * * * *", "minute item '/5' has no value"),
        ("* * * *", "expected 5 fields (minute hour day-of-month month day-of-week)"),
        ("0 * * * * *", "or an alias such as @daily, got 6"),
        ("", "got 0"),
        ("@reboot", "cron '@reboot': unknown alias; use one of @yearly"),
        ("0 0 30 2 *", "cron '0 0 30 2 *' never matches"),
        ("0 0 31 4,6,9,11 *", "never matches"),
        ("0 0 31 2 */2", "never matches"),  # '*/2' counts as unrestricted: both must match
    ],
)
def test_bad_expressions_name_the_field(expr: str, says: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        Cron(expr)
    assert says in str(info.value)
    assert str(info.value).startswith("cron ")


def test_non_string_and_unknown_zone() -> None:
    with pytest.raises(ConfigurationError, match="cron must be a string"):
        Cron(5)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="unknown time zone 'Mars/Base'"):
        Cron("* * * * *", "Mars/Base")
    with pytest.raises(ConfigurationError, match="unknown time zone ''"):
        Cron("* * * * *", "")
    with pytest.raises(ConfigurationError, match=r"unknown time zone '\.\./etc/passwd'"):
        Cron("* * * * *", "../etc/passwd")


def test_feb_29_alone_is_valid() -> None:
    Cron("0 0 29 2 *")
    Cron("0 0 31 4,5 *")  # May has a 31st


def test_text_is_canonical_and_parses_back() -> None:
    c = Cron("  */5   *  * * *  ")
    assert c.text == "*/5 * * * *"
    z = Cron("0 9 * * mon-fri", "Europe/Paris")
    assert z.text == "0 9 * * mon-fri tz=Europe/Paris"
    for s in (c, z, Cron("@daily"), Every(300), Every(1.5), Every(timedelta(days=1))):
        assert parse_schedule(s.text) == s
    assert Every(300).text == "every 300s"
    assert Every(1.5).text == "every 1.5s"
    assert Every(timedelta(hours=1)).text == "every 3600s"
    with pytest.raises(ConfigurationError):
        parse_schedule("every xs")
    with pytest.raises(ConfigurationError):
        parse_schedule("nonsense")


# -- next / previous ticks (UTC) ---------------------------------------------------------------


def test_next_is_strictly_after_and_last_is_at_or_before() -> None:
    c = Cron("*/5 * * * *")
    assert c.next_after(utc(2026, 5, 1, 10, 5)) == utc(2026, 5, 1, 10, 10)
    assert c.next_after(utc(2026, 5, 1, 10, 4, 59, 999999)) == utc(2026, 5, 1, 10, 5)
    assert c.last_at_or_before(utc(2026, 5, 1, 10, 5)) == utc(2026, 5, 1, 10, 5)
    assert c.last_at_or_before(utc(2026, 5, 1, 10, 4, 59)) == utc(2026, 5, 1, 10, 0)


def test_across_month_and_year_boundaries() -> None:
    assert Cron("*/5 * * * *").next_after(utc(2026, 12, 31, 23, 58)) == utc(2027, 1, 1)
    assert Cron("0 0 1 1 *").next_after(utc(2026, 6, 1)) == utc(2027, 1, 1)
    assert Cron("0 0 1 1 *").last_at_or_before(utc(2026, 12, 31, 23, 59)) == utc(2026, 1, 1)
    # the 31st: April has none, so the next one after April 1 is May 31
    assert Cron("0 12 31 * *").next_after(utc(2026, 4, 1)) == utc(2026, 5, 31, 12)
    assert Cron("0 12 31 * *").last_at_or_before(utc(2026, 5, 30)) == utc(2026, 3, 31, 12)
    assert Cron("59 23 * * *").last_at_or_before(utc(2027, 1, 1, 0, 0)) == utc(2026, 12, 31, 23, 59)
    assert ticks(Cron("0 0 1 */4 *"), utc(2026, 11, 26), 3) == [
        utc(2027, 1, 1),
        utc(2027, 5, 1),
        utc(2027, 9, 1),
    ]


def test_feb_29() -> None:
    leap = Cron("0 0 29 2 *")
    assert leap.next_after(utc(2025, 3, 1)) == utc(2028, 2, 29)
    assert leap.next_after(utc(2096, 2, 29)) == utc(2104, 2, 29)  # 2100 is not a leap year
    assert leap.last_at_or_before(utc(2028, 2, 28)) == utc(2024, 2, 29)
    # '*/1' in day-of-week starts with '*': unrestricted, so Feb 29 on any weekday
    assert Cron("0 0 29 2 */1").next_after(utc(2025, 3, 1)) == utc(2028, 2, 29)


def test_both_day_fields_restricted_match_either() -> None:
    # the 13th, or any Friday (Vixie cron); 2026-11-01 is a Sunday
    assert ticks(Cron("0 0 13 * fri"), utc(2026, 11, 1), 4) == [
        utc(2026, 11, 6),
        utc(2026, 11, 13),  # both
        utc(2026, 11, 20),
        utc(2026, 11, 27),
    ]
    assert ticks(Cron("0 0 1 * mon"), utc(2026, 11, 25), 3) == [
        utc(2026, 11, 30),
        utc(2026, 12, 1),
        utc(2026, 12, 7),
    ]
    # Feb 29 or a Monday in February
    assert Cron("0 0 29 2 mon").next_after(utc(2025, 3, 1)) == utc(2026, 2, 2)


def test_one_day_field_starting_with_star_means_both_must_match() -> None:
    # days 1, 11, 21, 31 that are also Fridays
    c = Cron("0 0 */10 * fri")
    got = ticks(c, utc(2026, 1, 1), 3)
    assert all(d.day in (1, 11, 21, 31) and d.weekday() == 4 for d in got)
    assert got[0] == utc(2026, 5, 1)
    assert ticks(Cron("0 0 * * sun"), utc(2026, 11, 26), 2) == [utc(2026, 11, 29), utc(2026, 12, 6)]


def _matches(c: Cron, t: datetime) -> bool:
    return (
        t.minute in c.minutes
        and t.hour in c.hours
        and t.month in c.months
        and c._day_ok(t.replace(tzinfo=None))
    )


@pytest.mark.parametrize(
    "expr",
    ["*/7 3-5 * * *", "0 0 13 * fri", "15 */6 1,15 * mon-fri", "30 2 * 2,3 *", "0 0 */10 * fri"],
)
def test_field_jumps_agree_with_a_minute_by_minute_search(expr: str) -> None:
    c = Cron(expr)
    rng = random.Random(expr)
    for _ in range(4):
        start = utc(2026, 1, 1) + timedelta(seconds=rng.randrange(0, 3 * 365 * 86400))
        want = start.replace(second=0, microsecond=0) + timedelta(minutes=1)
        while not _matches(c, want):
            want += timedelta(minutes=1)
        assert c.next_after(start) == want, start
        back = start.replace(second=0, microsecond=0)
        while not _matches(c, back):
            back -= timedelta(minutes=1)
        assert c.last_at_or_before(start) == back, start


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Cron("* * * * *").next_after(datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        Every(5).last_at_or_before(datetime(2026, 1, 1))


# -- time zones ----------------------------------------------------------------------------------


def test_zone_wall_clock_follows_summer_time() -> None:
    paris = Cron("0 9 * * *", "Europe/Paris")
    assert paris.next_after(utc(2026, 1, 10)) == utc(2026, 1, 10, 8)  # CET, UTC+1
    assert paris.next_after(utc(2026, 7, 10)) == utc(2026, 7, 10, 7)  # CEST, UTC+2


def test_spring_forward_gap_fires_once_at_the_jump() -> None:
    # New York, 2026-03-08: 02:00 EST jumps to 03:00 EDT (07:00 UTC); 02:30 does not exist
    daily = Cron("30 2 * * *", "America/New_York")
    assert ticks(daily, utc(2026, 3, 7, 12), 3) == [
        utc(2026, 3, 8, 7, 0),  # at the jump
        utc(2026, 3, 9, 6, 30),  # 02:30 EDT
        utc(2026, 3, 10, 6, 30),
    ]
    quarter = Cron("*/15 * * * *", "America/New_York")
    assert ticks(quarter, utc(2026, 3, 8, 6, 30), 4) == [
        utc(2026, 3, 8, 6, 45),  # 01:45 EST
        utc(2026, 3, 8, 7, 0),  # 02:00-02:45 (missing) and 03:00 EDT: one tick
        utc(2026, 3, 8, 7, 15),
        utc(2026, 3, 8, 7, 30),
    ]
    assert quarter.last_at_or_before(utc(2026, 3, 8, 7, 10)) == utc(2026, 3, 8, 7, 0)


def test_fall_back_repeated_hour_fires_once() -> None:
    # New York, 2026-11-01: 02:00 EDT falls back to 01:00 EST; 01:xx happens twice
    daily = Cron("30 1 * * *", "America/New_York")
    assert ticks(daily, utc(2026, 10, 31, 12), 2) == [
        utc(2026, 11, 1, 5, 30),  # 01:30 EDT, the first 01:30 only
        utc(2026, 11, 2, 6, 30),  # 01:30 EST
    ]
    quarter = Cron("*/15 * * * *", "America/New_York")
    assert ticks(quarter, utc(2026, 11, 1, 5, 30), 3) == [
        utc(2026, 11, 1, 5, 45),  # 01:45 EDT
        utc(2026, 11, 1, 7, 0),  # 02:00 EST: the repeated 01:xx gets no ticks
        utc(2026, 11, 1, 7, 15),
    ]
    # from inside the repeated hour (01:20 EST = 06:20 UTC) back to the last tick: 01:45 EDT
    assert quarter.last_at_or_before(utc(2026, 11, 1, 6, 20)) == utc(2026, 11, 1, 5, 45)
    assert quarter.next_after(utc(2026, 11, 1, 6, 20)) == utc(2026, 11, 1, 7, 0)


@pytest.mark.parametrize("zone", ["America/New_York", "Europe/London", "Australia/Lord_Howe"])
def test_next_and_last_are_consistent_around_zone_changes(zone: str) -> None:
    rng = random.Random(zone)
    for expr in ("*/15 * * * *", "30 1,2 * * *", "0 * * * *"):
        c = Cron(expr, zone)
        for start in (utc(2026, 3, 1), utc(2026, 10, 1), utc(2026, 4, 1)):
            t = start
            for _ in range(200):
                t = t + timedelta(seconds=rng.randrange(60, 20_000))
                nxt, last = c.next_after(t), c.last_at_or_before(t)
                assert last <= t < nxt
                assert c.next_after(last) == nxt, (expr, t)
                assert c.last_at_or_before(nxt - timedelta(microseconds=1)) == last, (expr, t)


# -- intervals -------------------------------------------------------------------------------------


def test_every_is_aligned_to_the_epoch() -> None:
    e = Every(300)
    assert e.next_after(utc(2026, 11, 26, 10, 3, 7)) == utc(2026, 11, 26, 10, 5)
    assert e.next_after(utc(2026, 11, 26, 10, 5)) == utc(2026, 11, 26, 10, 10)
    assert e.last_at_or_before(utc(2026, 11, 26, 10, 5)) == utc(2026, 11, 26, 10, 5)
    half = Every(1.5)
    assert half.next_after(utc(2026, 1, 1)) == utc(2026, 1, 1) + timedelta(seconds=1.5)
    assert Every(timedelta(minutes=7)) == Every(420)
    other_zone = datetime(2026, 11, 26, 11, 3, 7, tzinfo=timezone(timedelta(hours=1)))
    assert e.next_after(other_zone) == utc(2026, 11, 26, 10, 5)


@pytest.mark.parametrize(
    "every", [0, 0.5, -1, float("nan"), float("inf"), True, None, timedelta(0), 1e12, "0.5s"]
)
def test_bad_every(every: Any) -> None:
    with pytest.raises(ConfigurationError, match="every must be"):
        Every(every)


def test_every_takes_the_clis_durations() -> None:
    """The same parser as every CLI duration option (pgqueue.durations)."""
    assert Every("5m") == Every(300) == Every("300")
    assert Every("1h30m") == Every(timedelta(hours=1, minutes=30))
    assert Every("1.5s") == Every(1.5)
    assert make_schedule(every="7d") == Every(timedelta(days=7))


@pytest.mark.parametrize("every", ["5 min", "", "-5m", "m5", "1e3"])
def test_every_refuses_a_bad_duration_with_the_clis_message(every: str) -> None:
    message = f"invalid duration {every!r} for every: use seconds (90, 0.5) or a number"
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        Every(every)


def test_make_schedule_wants_exactly_one() -> None:
    with pytest.raises(ConfigurationError, match=r"exactly one of cron= .* or every="):
        make_schedule()
    with pytest.raises(ConfigurationError, match="exactly one"):
        make_schedule("* * * * *", 5)
    with pytest.raises(ConfigurationError, match="tz= applies to cron="):
        make_schedule(every=5, tz="UTC")
    assert make_schedule("@hourly", tz="UTC") == Cron("@hourly", "UTC")
    assert make_schedule(every=60) == Every(60)
