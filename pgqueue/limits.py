"""What pgqueue refuses: the payload limits (size, nesting depth, characters) and bounds.

One contract for every way a job gets in (the Python API, ``pgqueue enqueue``, the SQL
``enqueue()`` function and the ``jobs`` table's CHECK constraints, migration 0005):

- the arguments JSON (args and kwargs together, compact UTF-8 as pgqueue sends it) is at
  most ``max_payload_bytes`` (default 256 KiB; ``App`` may raise it to 1 MiB);
- containers nest at most ``max_depth`` levels (the args list or kwargs dict is level 1;
  default 64, at most 200: a worker decodes a job with Python's ``json``, whose recursion
  limit is 1000 frames shared with the worker's own stack);
- no NUL character and no lone surrogate anywhere (PostgreSQL cannot store them);
- run_at finite, at most 100 years ahead and not before 1970 (a past run_at means due
  now; the floor keeps out years 1 and BC, which some clients cannot read back).

The table enforces the ceilings (so an ``App`` configured up to them still fits); the SQL
function enforces the defaults. Bad input raises ``InvalidJobError`` and writes nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from .errors import ConfigurationError, InvalidJobError

DEFAULT_MAX_PAYLOAD_BYTES = 256 * 1024
MAX_PAYLOAD_BYTES_CEILING = 1024 * 1024
DEFAULT_MAX_DEPTH = 64
MAX_DEPTH_CEILING = 200
#: How far ahead a job may be scheduled (delay or run_at): 100 years.
MAX_SCHEDULE_SECONDS = 36_525 * 86_400.0
#: The earliest run_at accepted (the table's CHECK and the SQL enqueue() hold the same).
EARLIEST_RUN_AT = datetime(1970, 1, 1, tzinfo=UTC)

# Matched with fullmatch: "$" would also accept a trailing newline.
QUEUE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,62}")
TASK_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,199}")


@dataclass(frozen=True)
class Limits:
    """The payload limits an ``App`` enforces (``App(max_payload_bytes=, max_depth=)``).

    Raises ``ConfigurationError`` for a value outside 1..the ceiling (the table's CHECKs
    enforce the ceilings, so a larger limit could not be stored anyway)."""

    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    max_depth: int = DEFAULT_MAX_DEPTH

    def __post_init__(self) -> None:
        for name, value, ceiling in (
            ("max_payload_bytes", self.max_payload_bytes, MAX_PAYLOAD_BYTES_CEILING),
            ("max_depth", self.max_depth, MAX_DEPTH_CEILING),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= ceiling:
                raise ConfigurationError(
                    f"{name} must be a whole number from 1 to {ceiling} (the jobs table's "
                    f"ceiling), got {value!r}"
                )


DEFAULT_LIMITS = Limits()

_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')  # strings are skipped whole


def depth_of(text: str, stop: int) -> int:
    """The container nesting depth of JSON ``text`` (0 for a scalar), counting stops once
    it exceeds ``stop``."""
    depth = deepest = 0
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > stop:
                    break
        elif token in "]}":
            depth -= 1
    return deepest


def too_deep(where: str, limits: Limits) -> InvalidJobError:
    return InvalidJobError(
        f"{where}: nested deeper than {limits.max_depth} levels (the args list or kwargs dict is "
        "level 1); flatten it, or raise App(max_depth=...) up to "
        f"{MAX_DEPTH_CEILING}"
    )


def _utf8_size(where: str, text: str) -> int:
    if text.isascii():
        return len(text)
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidJobError(
            f"{where}: a lone surrogate (e.g. '\\ud800'), which is not valid Unicode "
            "and cannot be stored; decode bytes with errors='replace' or pass them as base64"
        ) from None


def check_payload(where: str, args_json: str, kwargs_json: str, limits: Limits) -> None:
    """Raise ``InvalidJobError`` if the encoded arguments break a limit: size (bytes of
    UTF-8 together), depth, lone surrogates. (NUL is found by the encoder's caller.)"""
    size = len(args_json) + len(kwargs_json)
    if size * 4 > limits.max_payload_bytes or not (args_json.isascii() and kwargs_json.isascii()):
        size = _utf8_size(where, args_json) + _utf8_size(where, kwargs_json)
        if size > limits.max_payload_bytes:
            raise InvalidJobError(
                f"{where}: {size} bytes of JSON, more than the limit of "
                f"{limits.max_payload_bytes}; pass a reference (an id, a URL) instead of the "
                f"data, or raise App(max_payload_bytes=...) up to {MAX_PAYLOAD_BYTES_CEILING}"
            )
    stop = limits.max_depth
    for text in (args_json, kwargs_json):
        if text.count("[") + text.count("{") > stop and depth_of(text, stop) > stop:
            raise too_deep(where, limits)


def check_text(name: str, value: str) -> None:
    """Raise ``InvalidJobError`` if the string option ``name`` holds NUL or a lone
    surrogate (PostgreSQL text stores neither)."""
    if "\x00" in value:
        raise InvalidJobError(f"{name} contains a NUL character (\\x00), which text cannot hold")
    if not value.isascii():
        _utf8_size(name, value)


_valid_names: set[tuple[str, str]] = set()  # names already checked (a bounded set of names)


def _check_name(kind: str, value: object, pattern: re.Pattern[str], rule: str) -> str:
    """``value`` if it is a valid name of ``kind`` (matched to its end), else
    ``InvalidJobError``; names once found valid are remembered (a bounded set)."""
    if isinstance(value, str) and (kind, value) in _valid_names:
        return value
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise InvalidJobError(f"invalid {kind} name {value!r}: {rule}")
    if len(_valid_names) < 10_000:
        _valid_names.add((kind, value))
    return value


def check_queue(queue: object) -> str:
    """Return ``queue`` if it is a valid queue name, else raise ``InvalidJobError``."""
    return _check_name(
        "queue",
        queue,
        QUEUE_RE,
        "start with a letter or underscore, then letters, digits, '_', '.', '-'; "
        "at most 63 characters (e.g. 'emails')",
    )


def check_task_name(name: object) -> str:
    """Return ``name`` if it is a valid task name, else raise ``InvalidJobError``."""
    return _check_name(
        "task",
        name,
        TASK_RE,
        "start with a letter or underscore, then letters, digits, '_', '.', ':', '-'; "
        "at most 200 characters (e.g. 'emails.send')",
    )
