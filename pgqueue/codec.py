"""Typed arguments: values JSON has no type for travel as tagged objects.

A job's args and kwargs are JSON (jsonb). UUID, datetime, date, time, timedelta,
Decimal and bytes arguments are written as a two-key object and turned back into the
same Python value on the worker::

    uuid.UUID("12345678-...")       {"__pgqueue__": "uuid", "v": "12345678-..."}
    datetime(2026, 1, 2, 3, 4, 5)   {"__pgqueue__": "datetime", "v": "2026-01-02T03:04:05"}
    date(2026, 1, 2)                {"__pgqueue__": "date", "v": "2026-01-02"}
    time(3, 4, 5)                   {"__pgqueue__": "time", "v": "03:04:05"}
    timedelta(days=1, seconds=2)    {"__pgqueue__": "timedelta", "v": [1, 2, 0]}
    Decimal("1.10")                 {"__pgqueue__": "decimal", "v": "1.10"}
    b"\\x00\\xff"                     {"__pgqueue__": "bytes", "v": "AP8="}   (base64)

(datetimes and times keep their offset, or their lack of one; Decimals every digit.)
An app adds its own types with ``register_type(cls, name, encode, decode)``. The key
``"__pgqueue__"`` is reserved: an argument dict holding it that is not a valid tagged
value is refused at enqueue (``InvalidJobError``); a worker that meets a tag it does not
know (the type is registered only where the job was enqueued) fails that job alone as
``undecodable`` (see ``worker/decode.py``).

Plain JSON pays nothing: the encoder calls ``default`` only for values JSON has no type
for, and a decoder looks for tags only when the text holds the marker ``"__pgqueue__"``.
A SQL client may write tagged objects itself (``pgqueue.enqueue()``).
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from .errors import ConfigurationError

TAG = "__pgqueue__"
#: What a JSON text holds when it may hold a tagged value (a cheap substring test).
MARK = '"__pgqueue__"'

_encoders: dict[type, tuple[str, Callable[[Any], Any]]] = {}
_decoders: dict[str, Callable[[Any], Any]] = {}


def register_type(
    cls: type, name: str, encode: Callable[[Any], Any], decode: Callable[[Any], Any]
) -> None:
    """Let arguments of type ``cls`` through: ``encode(value)`` gives plain JSON (a str,
    a list, ...), stored as ``{"__pgqueue__": name, "v": ...}``; ``decode`` turns that
    back into the value on the worker. Register it in a module both the producer and the
    worker import (the one that defines the app). Subclasses of ``cls`` are encoded
    with it too (and come back as what ``decode`` returns). Registering a name again
    replaces it. Raises ``ConfigurationError`` for a bad name or a type JSON already has.
    """
    if not isinstance(cls, type) or cls in (str, int, float, bool, list, tuple, dict):
        raise ConfigurationError(f"register_type: {cls!r} is not a type JSON lacks")
    if not isinstance(name, str) or not name or len(name) > 100:
        raise ConfigurationError("register_type: the name is a non-empty string (<= 100 chars)")
    if not (callable(encode) and callable(decode)):
        raise ConfigurationError("register_type: encode and decode must be callables")
    for other, (other_name, _) in list(_encoders.items()):
        if other_name == name and other is not cls:
            del _encoders[other]
    _encoders[cls] = (name, encode)
    _decoders[name] = decode


def default(value: Any) -> Any:
    """``JSONEncoder.default``: the tagged object for a registered type, else TypeError
    (the encoder's own message: "Object of type X is not JSON serializable")."""
    entry = _encoders.get(type(value))
    if entry is None:
        # a subclass: the most recently registered match wins (datetime before date)
        for cls in reversed(_encoders):
            if isinstance(value, cls):
                entry = _encoders[cls]
                break
        else:
            raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
    name, encode = entry
    return {TAG: name, "v": encode(value)}


class BadTag(ValueError):
    """A tagged object that cannot be decoded: unknown name, extra keys, a bad value."""


def hook(obj: dict[str, Any]) -> Any:
    """``object_hook``: a tagged object as its value; any other dict unchanged. Raises
    ``BadTag`` naming what is wrong."""
    if TAG not in obj:
        return obj
    name = obj[TAG]
    if len(obj) != 2 or "v" not in obj or not isinstance(name, str):
        raise BadTag(
            f"a dict with the reserved key {TAG!r} must be exactly "
            f'{{"{TAG}": "<type>", "v": <value>}}, got keys {sorted(obj)}'
        )
    decode = _decoders.get(name)
    if decode is None:
        raise BadTag(
            f"unknown typed value {name!r}: register it with pgqueue.register_type in a "
            "module the worker imports too"
        )
    try:
        return decode(obj["v"])
    except Exception as exc:
        raise BadTag(f"typed value {name!r}: {type(exc).__name__}: {exc}") from None


def loads(text: str) -> Any:
    """JSON text with tagged values decoded (``BadTag`` for a bad one)."""
    return json.loads(text, object_hook=hook)


def revive(value: Any) -> Any:
    """``value`` (JSON already decoded, e.g. by psycopg) with tagged objects turned into
    their values, walking lists and dicts (``BadTag`` for a bad one)."""
    if isinstance(value, dict):
        return hook({k: revive(v) for k, v in value.items()})
    if isinstance(value, list):
        return [revive(v) for v in value]
    return value


def _datetime(v: str) -> datetime:
    return datetime.fromisoformat(v)


def _timedelta(v: list[int]) -> timedelta:
    days, seconds, micro = v
    return timedelta(days=days, seconds=seconds, microseconds=micro)


# Built in; datetime before date (a datetime is a date) and the subclass scan goes from
# the newest registration back, so date is registered first.
register_type(uuid.UUID, "uuid", str, uuid.UUID)
register_type(date, "date", date.isoformat, date.fromisoformat)
register_type(datetime, "datetime", datetime.isoformat, _datetime)
register_type(time, "time", time.isoformat, time.fromisoformat)
register_type(timedelta, "timedelta", lambda d: [d.days, d.seconds, d.microseconds], _timedelta)
register_type(Decimal, "decimal", str, Decimal)
register_type(
    bytes,
    "bytes",
    lambda b: base64.b64encode(b).decode("ascii"),
    lambda v: base64.b64decode(v, validate=True),
)
