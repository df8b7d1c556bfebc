"""Durations written as text: one parser for the command line (``pgqueue.cli.durations``,
every option that takes a duration) and ``@app.periodic(every="5m")``.

A duration is plain seconds (``90``, ``0.5``) or numbers with units, largest first, each
unit at most once: ``30s``, ``5m``, ``1h30m``, ``1.5h``, ``7d``, ``2w``, ``250ms``
(``w`` weeks, ``d`` days, ``h`` hours, ``m`` minutes, ``s`` seconds, ``ms``
milliseconds; case and spaces between the parts do not matter). Not accepted: negative
numbers, exponents (``1e5``), ``inf``/``nan``, words (``7 days``).
"""

from __future__ import annotations

import math
import re

#: Seconds per unit, largest first (the order a compound duration must follow).
UNITS = {"w": 604_800.0, "d": 86_400.0, "h": 3_600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
#: Longer than any retention anyone means (and than PostgreSQL's intervals comfortably hold).
MAX_SECONDS = 100 * 365 * 86_400.0
FORMAT = "use seconds (90, 0.5) or a number with a unit: 30s, 5m, 1h30m, 1.5h, 7d, 2w, 250ms"

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_PLAIN = re.compile(rf"^{_NUMBER}$")
_PART = re.compile(rf"\s*({_NUMBER})\s*(ms|w|d|h|m|s)\s*")


def parse_duration(text: str, option: str = "the duration") -> float:
    """``text`` in seconds. Raises ``ValueError`` with the one message naming ``option``
    and the format (or saying the value is longer than 100 years)."""
    value = text.strip().lower()
    seconds: float | None = None
    if _PLAIN.match(value):
        seconds = float(value)
    elif value:
        seconds, pos, last = 0.0, 0, -1
        for match in _PART.finditer(value):
            rank = list(UNITS).index(match.group(2))
            if match.start() != pos or rank <= last:
                seconds = None
                break
            seconds += float(match.group(1)) * UNITS[match.group(2)]
            pos, last = match.end(), rank
        if pos != len(value):
            seconds = None
    if seconds is None or not math.isfinite(seconds):
        raise ValueError(f"invalid duration {text!r} for {option}: {FORMAT}")
    if seconds > MAX_SECONDS:
        raise ValueError(f"duration {text!r} for {option} is too long (at most 100 years)")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest exact spelling in one unit: 86400 -> '1d', 0.01 -> '10ms', 90 -> '90s'."""
    if seconds == 0:
        return "0s"
    for unit, size in UNITS.items():
        count = seconds / size
        if count >= 1 and abs(count - round(count)) < 1e-9:
            return f"{round(count)}{unit}"
    return f"{seconds:g}s"
