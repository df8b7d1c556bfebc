"""Durations on the command line: one parser and one message for every option that takes
one (``work --lease``, ``--keep-succeeded``, ``prune --older-than``, ``queues set
--priority-aging`` and ``--rate``'s period, ``enqueue --delay``, ...).

The forms are ``pgqueue.durations``'s (plain seconds ``90``, ``0.5``, or ``30s``, ``5m``,
``1h30m``, ``1.5h``, ``7d``, ``2w``, ``250ms``), the parser shared with
``@app.periodic(every=...)``.

A bad value is a usage error, click's convention (exit 2), printed on one line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from ..durations import FORMAT, MAX_SECONDS, UNITS, format_duration, parse_duration

if TYPE_CHECKING:  # click >= 8.2 types ParamType's values; 8.1's is not generic
    _ParamType = click.ParamType[Any, Any]
else:
    _ParamType = click.ParamType

__all__ = [
    "FORMAT",
    "MAX_SECONDS",
    "UNITS",
    "Duration",
    "OneLineUsageError",
    "Rate",
    "Seconds",
    "format_duration",
    "parse_duration",
]


class Seconds(float):
    """Seconds (a float everywhere), remembering how they were written (``text``), for
    messages that echo the user's own spelling."""

    text: str

    def __new__(cls, seconds: float, text: str) -> Seconds:
        self = super().__new__(cls, seconds)
        self.text = text
        return self


class OneLineUsageError(click.BadParameter):
    """A bad option value: click's usage error (exit 2), shown as one line, no usage text."""

    def format_message(self) -> str:
        return str(self.message)

    def show(self, file: Any = None) -> None:
        click.echo(f"Error: {self.format_message()}", err=True, file=file)


def _option_name(param: click.Parameter | None) -> str:
    if param is None:
        return "the duration"
    opts: list[str] = list(getattr(param, "opts", None) or [param.name or "value"])
    return max(opts, key=len)


class Duration(_ParamType):
    """A click type: a duration (see the module docstring) -> ``Seconds``, checked
    against ``low``..``high`` (``low_open``: ``low`` itself is refused). With
    ``allow_none`` the word ``none`` passes through as the string ``"none"``."""

    name = "duration"

    def __init__(
        self,
        low: float = 0.0,
        high: float = MAX_SECONDS,
        *,
        low_open: bool = False,
        allow_none: bool = False,
    ) -> None:
        self.low, self.high, self.low_open, self.allow_none = low, high, low_open, allow_none

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        option = _option_name(param)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            seconds = float(value)  # a default given in seconds
        elif self.allow_none and str(value).strip().lower() == "none":
            return "none"
        else:
            try:
                seconds = parse_duration(str(value), option)
            except ValueError as exc:
                raise OneLineUsageError(str(exc), ctx, param) from None
        too_low = seconds <= self.low if self.low_open else seconds < self.low
        if too_low or seconds > self.high:
            bounds = ("more than " if self.low_open else "at least ") + format_duration(self.low)
            if self.high < MAX_SECONDS:
                bounds += f", at most {format_duration(self.high)}"
            raise OneLineUsageError(
                f"{option} {str(value).strip()} is out of range: use {bounds}",
                ctx,
                param,
            )
        return Seconds(seconds, str(value).strip())


class Rate(_ParamType):
    """A click type: ``COUNT/PERIOD`` (``10/s``, ``100/1m``, ``5/2.5s``; a bare unit is one
    of it) -> (count, period seconds); ``none`` -> (None, None)."""

    name = "rate"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        option = _option_name(param)
        text = str(value)
        if text.strip().lower() == "none":
            return None, None
        count, sep, period = text.partition("/")
        if not sep or not count.strip().isdigit() or int(count) < 1 or not period.strip():
            raise OneLineUsageError(
                f"invalid rate {text!r} for {option}: use COUNT/PERIOD, e.g. 10/s, 100/1m, "
                "5/2.5s, or none",
                ctx,
                param,
            )
        period = period.strip()
        try:  # a bare unit is one of it: 10/s is 10/1s
            seconds = parse_duration(period if not period[:1].isalpha() else "1" + period, option)
        except ValueError as exc:
            message = str(exc).replace(f"'1{period}'", repr(period))  # the user's spelling
            raise OneLineUsageError(message, ctx, param) from None
        if seconds <= 0:
            raise OneLineUsageError(
                f"invalid rate {text!r} for {option}: the period must be longer than 0",
                ctx,
                param,
            )
        return int(count), seconds
