"""Schedules for periodic jobs: a 5-field cron expression, or a fixed interval.

``Cron("*/5 * * * *")``: minute, hour, day of month, month, day of week. Each field takes
``*``, a number, a range ``a-b``, a step ``*/n``, ``a-b/n`` or ``a/n`` (``a`` to the end),
and comma-separated lists of these; months and weekdays also take names (``jan``,
``mon-fri``); day of week 0 and 7 are both Sunday. As in Vixie cron (and cronie), when
both day fields are restricted a day matches if *either* does (``0 0 1 * mon``: the 1st
and every Monday); a field that starts with ``*`` (``*``, ``*/2``) does not count as
restricted for this rule, so then both must match. Aliases: ``@hourly``, ``@daily``
(``@midnight``), ``@weekly``, ``@monthly``, ``@yearly`` (``@annually``).

``tz``: cron fields are read on the wall clock of that zone (default UTC). Across a
daylight-saving change: a wall-clock time that does not exist (clocks jump forward) fires
at the instant of the jump, once however many ticks fell into the gap, like Vixie cron;
a wall-clock time that occurs twice (clocks fall back) fires once, at its first
occurrence (so ``*/15 * * * *`` has no ticks in the repeated hour: use UTC or ``Every``
for a steady rate).

``Every(seconds)``: ticks at whole multiples of the interval since the Unix epoch, so
every process computes the same ticks without talking to the others.

Both compute ``next_after(dt)`` (the first tick strictly after ``dt``) and
``last_at_or_before(dt)`` by jumping field by field, never minute by minute. Bad
expressions raise ``ConfigurationError`` naming the expression and the field.
"""

from __future__ import annotations

import calendar
import math
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .durations import parse_duration
from .errors import ConfigurationError

UTC = UTC
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
_US = timedelta(microseconds=1)

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = {m.lower(): i for i, m in enumerate(calendar.month_abbr) if m}
_DAYS = {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
# (name, lowest, highest, names); day-of-week 7 is Sunday again (folded into 0)
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day-of-month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 0, 7, _DAYS),
)
_LONGEST_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # Feb 29 exists
_SEARCH_YEARS = 100  # Feb 29 on a given weekday can be 40 years away (2096 -> 2136)
MAX_EVERY = timedelta(days=3650)


def _aware(dt: datetime) -> datetime:
    if not isinstance(dt, datetime) or dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"a timezone-aware datetime is needed, got {dt!r}")
    return dt


# -- cron ------------------------------------------------------------------------------------


def _parse_field(expr: str, text: str, index: int) -> tuple[int, ...]:
    fname, low, high, names = _FIELDS[index]

    def fail(why: str) -> ConfigurationError:
        return ConfigurationError(f"cron {expr!r}: {fname} {why}")

    def number(token: str) -> int:
        word = token.lower()
        if word in names:
            return int(names[word])
        if not (token.isascii() and token.isdigit()):
            hint = f" or a name ({', '.join(names)})" if names else ""
            raise fail(f"value {token!r} is not a number{hint}")
        value = int(token)
        if not low <= value <= high:
            raise fail(f"value {value} is out of range {low}-{high}")
        return value

    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise fail(f"field {text!r} has an empty list item")
        base, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not (step_text.isascii() and step_text.isdigit()):
                raise fail(f"step {step_text!r} is not a number")
            step = int(step_text)
            if step < 1:
                raise fail("step must be >= 1")
        if base == "*":
            start, end = low, (6 if index == 4 else high)
        elif "-" in base:
            first, _, last = base.partition("-")
            if not first or not last:
                raise fail(f"range {base!r} needs two values, like 1-5")
            start, end = number(first), number(last)
            if start > end:
                hint = " (write sat-sun as 6-7)" if index == 4 else ""
                raise fail(f"range {base!r} is reversed{hint}")
        elif base:
            start = number(base)
            end = high if slash else start
        else:
            raise fail(f"item {part!r} has no value")
        values.update(range(start, end + 1, step))
    if index == 4 and 7 in values:
        values.discard(7)
        values.add(0)
    return tuple(sorted(values))


@dataclass(frozen=True)
class Cron:
    """A cron schedule (see the module docstring). ``tz``: an IANA zone name or None (UTC).

    Raises ``ConfigurationError`` naming the bad field, or when the expression can never
    match (``0 0 30 2 *``), or when ``tz`` is not a known zone.
    """

    expression: str = field(compare=False)  # equal schedules may be spelled apart
    tz: str | None = None
    minutes: tuple[int, ...] = field(init=False, repr=False)
    hours: tuple[int, ...] = field(init=False, repr=False)
    days: tuple[int, ...] = field(init=False, repr=False)
    months: tuple[int, ...] = field(init=False, repr=False)
    weekdays: tuple[int, ...] = field(init=False, repr=False)
    either_day: bool = field(init=False, repr=False)
    zone: ZoneInfo | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        expr = self.expression
        if not isinstance(expr, str):
            raise ConfigurationError(f"cron must be a string like '*/5 * * * *', got {expr!r}")
        words = expr.split()
        if len(words) == 1 and words[0].startswith("@"):
            if words[0].lower() not in ALIASES:
                raise ConfigurationError(
                    f"cron {expr!r}: unknown alias; use one of {', '.join(ALIASES)}"
                )
            words = ALIASES[words[0].lower()].split()
        if len(words) != 5:
            raise ConfigurationError(
                f"cron {expr!r}: expected 5 fields (minute hour day-of-month month "
                f"day-of-week) or an alias such as @daily, got {len(words)}"
            )
        parsed = [_parse_field(expr, w, i) for i, w in enumerate(words)]
        for name, values in zip(
            ("minutes", "hours", "days", "months", "weekdays"), parsed, strict=True
        ):
            object.__setattr__(self, name, values)
        object.__setattr__(
            self, "either_day", not words[2].startswith("*") and not words[4].startswith("*")
        )
        if not self.either_day and not any(
            d <= _LONGEST_MONTH[m - 1] for m in self.months for d in self.days
        ):
            raise ConfigurationError(
                f"cron {expr!r} never matches: no month in its month field has such a day "
                "of the month"
            )
        zone = None
        if self.tz is not None:
            try:
                zone = ZoneInfo(self.tz) if isinstance(self.tz, str) and self.tz else None
            except (ZoneInfoNotFoundError, ValueError, OSError):
                zone = None
            if zone is None:
                raise ConfigurationError(
                    f"cron {expr!r}: unknown time zone {self.tz!r}; use an IANA name such "
                    "as 'Europe/Paris' (or leave tz out for UTC)"
                )
        object.__setattr__(self, "zone", zone)

    @property
    def text(self) -> str:
        normal = " ".join(self.expression.split())
        return normal if self.tz is None else f"{normal} tz={self.tz}"

    # -- matching on naive wall-clock minutes -----------------------------------------------
    def _day_ok(self, d: datetime) -> bool:
        dom = d.day in self.days
        dow = (d.weekday() + 1) % 7 in self.weekdays  # Python: Monday 0; cron: Sunday 0
        return (dom or dow) if self.either_day else (dom and dow)

    def _next_naive(self, t: datetime) -> datetime:
        """The first matching wall-clock minute at or after ``t`` (whole minute)."""
        limit = t.year + _SEARCH_YEARS
        while t.year <= limit:
            if t.month not in self.months:
                i = bisect_right(self.months, t.month)
                year = t.year if i < len(self.months) else t.year + 1
                t = datetime(year, self.months[i % len(self.months)], 1)
            elif not self._day_ok(t):
                t = datetime(t.year, t.month, t.day) + timedelta(days=1)
            elif t.hour not in self.hours:
                i = bisect_right(self.hours, t.hour)
                if i < len(self.hours):
                    t = t.replace(hour=self.hours[i], minute=0)
                else:
                    t = datetime(t.year, t.month, t.day) + timedelta(days=1)
            elif t.minute not in self.minutes:
                i = bisect_right(self.minutes, t.minute)
                if i < len(self.minutes):
                    t = t.replace(minute=self.minutes[i])
                else:
                    t = t.replace(minute=0) + timedelta(hours=1)
            else:
                return t
        raise RuntimeError(f"cron {self.expression!r}: no tick within {_SEARCH_YEARS} years")

    def _prev_naive(self, t: datetime) -> datetime:
        """The last matching wall-clock minute at or before ``t`` (whole minute)."""
        limit = t.year - _SEARCH_YEARS
        while t.year >= limit:
            if t.month not in self.months:
                i = bisect_left(self.months, t.month) - 1
                year = t.year if i >= 0 else t.year - 1
                month = self.months[i]
                last_day = calendar.monthrange(year, month)[1]
                t = datetime(year, month, last_day, 23, 59)
            elif not self._day_ok(t):
                t = datetime(t.year, t.month, t.day) - MINUTE
            elif t.hour not in self.hours:
                i = bisect_left(self.hours, t.hour) - 1
                if i >= 0:
                    t = t.replace(hour=self.hours[i], minute=59)
                else:
                    t = datetime(t.year, t.month, t.day) - MINUTE
            elif t.minute not in self.minutes:
                i = bisect_left(self.minutes, t.minute) - 1
                t = t.replace(minute=self.minutes[i]) if i >= 0 else t.replace(minute=0) - MINUTE
            else:
                return t
        raise RuntimeError(f"cron {self.expression!r}: no tick within {_SEARCH_YEARS} years")

    # -- wall clock <-> instants -------------------------------------------------------------
    def _instant(self, wall: datetime) -> datetime:
        """The instant a matching wall-clock minute fires at (non-decreasing in ``wall``):
        its first occurrence if it occurs twice; the moment of the jump if it falls into
        a gap."""
        if self.zone is None:
            return wall.replace(tzinfo=UTC)
        first = wall.replace(tzinfo=self.zone, fold=0).astimezone(UTC)
        if first.astimezone(self.zone).replace(tzinfo=None) == wall:
            return first
        # In a gap: read with the offset after the jump (fold=1) it lands before the jump,
        # with the one before (fold=0) after it. Bisect to the second where it changes.
        after = first.astimezone(self.zone).utcoffset()
        lo = int(wall.replace(tzinfo=self.zone, fold=1).timestamp())
        hi = math.ceil(first.timestamp())
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if datetime.fromtimestamp(mid, self.zone).utcoffset() == after:
                hi = mid
            else:
                lo = mid
        return datetime.fromtimestamp(hi, UTC)

    def _wall(self, dt: datetime) -> datetime:
        local = dt.astimezone(self.zone or UTC)
        return local.replace(tzinfo=None, fold=0)

    def next_after(self, dt: datetime) -> datetime:
        """The first tick strictly after ``dt``, in UTC."""
        dt = _aware(dt)
        wall = self._wall(dt)
        # Every wall-clock minute up to dt's own fires at or before dt (_instant is
        # non-decreasing), so the search starts at the next whole minute.
        t = self._next_naive(wall.replace(second=0, microsecond=0) + MINUTE)
        for _ in range(10_000):  # only the minutes of a repeated hour go round again
            instant = self._instant(t)
            if instant > dt:
                return instant
            t = self._next_naive(t + MINUTE)
        raise RuntimeError(f"cron {self.expression!r}: no tick after {dt}")

    def last_at_or_before(self, dt: datetime) -> datetime:
        """The latest tick at or before ``dt``, in UTC."""
        dt = _aware(dt)
        wall = self._wall(dt)
        if self.zone is not None:
            local = dt.astimezone(self.zone)
            if local.fold == 1:  # the second pass through a repeated hour: its first
                # occurrences (up to one repeat later on the wall clock) are all earlier
                first = local.replace(fold=0).utcoffset()
                second = local.utcoffset()
                if first is not None and second is not None and first > second:
                    wall += first - second
        t = self._prev_naive(wall.replace(second=0, microsecond=0))
        for _ in range(10_000):
            instant = self._instant(t)
            if instant <= dt:
                return instant
            t = self._prev_naive(t - MINUTE)
        raise RuntimeError(f"cron {self.expression!r}: no tick before {dt}")


# -- fixed interval ----------------------------------------------------------------------


@dataclass(frozen=True)
class Every:
    """Ticks at whole multiples of ``seconds`` since the Unix epoch (UTC).

    ``seconds``: a number >= 1, a ``timedelta`` (kept to the microsecond) or a duration
    as the CLI takes it (``"5m"``, ``"1h30m"``: ``pgqueue.durations``), at most 3650 days.
    Raises ``ConfigurationError`` otherwise.
    """

    seconds: float | timedelta | str = field(compare=False)
    micros: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        value = self.seconds
        if isinstance(value, timedelta):
            micros = value // _US
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            micros = round(value * 1_000_000) if math.isfinite(value) else -1
        elif isinstance(value, str):
            try:
                micros = round(parse_duration(value, "every") * 1_000_000)
            except ValueError as exc:
                raise ConfigurationError(str(exc)) from None
        else:
            raise ConfigurationError(
                f"every must be seconds, a timedelta or a duration ('5m'), got {value!r}"
            )
        if not 1_000_000 <= micros <= MAX_EVERY // _US:
            raise ConfigurationError(
                f"every must be between 1 second and {MAX_EVERY.days} days, got {value!r}"
            )
        object.__setattr__(self, "micros", micros)

    @property
    def text(self) -> str:
        return f"every {Decimal(self.micros) / Decimal(1_000_000)}s"

    def _k(self, dt: datetime) -> int:
        return ((_aware(dt) - EPOCH) // _US) // self.micros

    def _tick(self, k: int) -> datetime:
        return EPOCH + timedelta(microseconds=k * self.micros)

    def next_after(self, dt: datetime) -> datetime:
        """The first tick strictly after ``dt``, in UTC."""
        return self._tick(self._k(dt) + 1)

    def last_at_or_before(self, dt: datetime) -> datetime:
        """The latest tick at or before ``dt``, in UTC."""
        return self._tick(self._k(dt))


def make_schedule(
    cron: str | None = None, every: float | timedelta | str | None = None, tz: str | None = None
) -> Cron | Every:
    """The schedule for ``cron=`` (with optional ``tz``) or ``every=``; exactly one of the
    two. Raises ``ConfigurationError`` with what to fix."""
    if (cron is None) == (every is None):
        raise ConfigurationError(
            "give exactly one of cron= (e.g. '*/5 * * * *') or every= (e.g. 60, '5m')"
        )
    if every is not None:
        if tz is not None:
            raise ConfigurationError(
                "tz= applies to cron= schedules; every= ticks are aligned to the epoch"
            )
        return Every(every)
    assert cron is not None
    return Cron(cron, tz)


def parse_schedule(text: str) -> Cron | Every:
    """The schedule whose ``text`` this is (as stored in the ``periodic`` table).

    Raises ``ConfigurationError`` if the text is not one.
    """
    if text.startswith("every ") and text.endswith("s"):
        try:
            micros = timedelta(microseconds=int(Decimal(text[len("every ") : -1]) * 1_000_000))
        except (ArithmeticError, ValueError):
            raise ConfigurationError(f"not a schedule: {text!r}") from None
        return Every(micros)
    expression, sep, zone = text.rpartition(" tz=")
    return Cron(expression, zone) if sep else Cron(text)
