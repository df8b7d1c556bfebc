"""Decoding a claimed row's JSON columns (args, kwargs, checkpoint) as fast as a drain
needs: the C scanner without ``json.loads``' Python layers, one type check riding on its
result, and typed values (``pgqueue.codec``) decoded only when the text holds their
mark. Anything unusual goes through ``json.loads``/``codec.loads``, which raise proper
errors (``decode.py`` turns those into an ``undecodable`` failure of that job alone).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .. import codec
from ..codec import MARK

# The decoder's C scanner, without json.loads' Python layers (typeshed does not list it).
_scan: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _json(text: str) -> Any:
    """Parse JSON text PostgreSQL wrote (jsonb::text); anything the bare scanner does not
    consume whole goes through ``json.loads`` (which raises a proper error)."""
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        return json.loads(text)
    return value if end == len(text) else json.loads(text)


def _args(text: str) -> list[Any]:
    """A claimed row's args (jsonb::text) as a list. The scan is inlined (no extra call)
    and the type check rides on its result: a normal row pays one compare and one
    substring test (typed values, ``codec.MARK``). Anything else goes through
    ``_checked``, which decodes typed values or raises a proper error."""
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        end = -1
    if end == len(text) and type(value) is list and MARK not in text:
        return value  # type: ignore[no-any-return]
    return _checked(text, "args", list)  # type: ignore[no-any-return]


def _kwargs(text: str) -> dict[str, Any]:
    """A claimed row's kwargs (jsonb::text) as a dict; see ``_args``."""
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        end = -1
    if end == len(text) and type(value) is dict and MARK not in text:
        return value  # type: ignore[no-any-return]
    return _checked(text, "kwargs", dict)  # type: ignore[no-any-return]


def _checked(text: str, field: str, want: type) -> Any:
    """``text`` parsed by ``json.loads`` with typed values decoded (``codec``; its error if
    it is not JSON Python can read, ``BadTag`` for a tag this worker does not know), or
    ``_WrongType`` if it is not a ``want``."""
    value = codec.loads(text) if MARK in text else json.loads(text)
    if type(value) is not want:
        raise _WrongType(field, value, want)
    return value


class _WrongType(TypeError):
    """Args or kwargs of the wrong JSON type (only a row put in by hand can have them)."""

    def __init__(self, field: str, value: Any, want: type) -> None:
        names = {list: "an array", dict: "an object", str: "a string", bool: "a boolean"}
        got = "null" if value is None else names.get(type(value), "a number")
        must = (
            "an array (the positional arguments)"
            if want is list
            else ("an object (the keyword arguments)")
        )
        super().__init__(f"{field} is {got}; it must be {must}")
