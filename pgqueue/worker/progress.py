"""What ``ctx.progress()`` and ``ctx.checkpoint()`` accept, checked before anything is kept.

Progress is small and lossy by design (the last value wins; it is written with the next
heartbeat), so a long message is cut rather than refused. A checkpoint is stored as the
job's arguments are, so it gets their limits (``pgqueue/limits.py``): JSON that
PostgreSQL's jsonb can hold, within the App's ``max_payload_bytes`` and ``max_depth``.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from ..errors import InvalidJobError
from ..limits import DEFAULT_LIMITS, Limits, check_payload, check_text

# A NUL character as JSON writes it (\u0000 after an even number of backslashes).
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
#: A progress message longer than this is cut (with "…").
MAX_MESSAGE = 500


def _number(name: str, value: object) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidJobError(f"progress: {name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise InvalidJobError(f"progress: {name} must be a finite number >= 0, got {value!r}")
    return value


def progress_value(done: object, total: object, message: object) -> dict[str, Any]:
    """The progress to store: ``{"done", "total", "message"}``. Raises ``InvalidJobError``
    (a ``ValueError``) for a negative, infinite or non-number ``done``/``total`` or a
    message that is not a string."""
    value: dict[str, Any] = {"done": _number("done", done), "total": None, "message": None}
    if total is not None:
        value["total"] = _number("total", total)
    if message is not None:
        if not isinstance(message, str):
            raise InvalidJobError(
                f"progress: message must be a string, got {type(message).__name__}"
            )
        if len(message) > MAX_MESSAGE:
            message = message[: MAX_MESSAGE - 1] + "…"
        value["message"] = (
            message.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
        )  # no NUL, no lone surrogate: PostgreSQL stores neither
    return value


def checkpoint_json(state: object, limits: Limits = DEFAULT_LIMITS) -> str:
    """``state`` as JSON text for the checkpoint column. Raises ``InvalidJobError`` (and
    nothing is stored) if it is not JSON (NaN and infinity included), holds a NUL
    character or a lone surrogate, or breaks the App's size or depth limit."""
    try:
        text = json.dumps(state, allow_nan=False, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidJobError(f"checkpoint: the state is not JSON: {exc}") from None
    check_text("checkpoint", text)  # NUL (as \u0000 in JSON too) and lone surrogates
    if "\\u0000" in text and _JSON_NUL.search(text):
        raise InvalidJobError("checkpoint: contains a NUL character, which jsonb cannot hold")
    check_payload("checkpoint", text, "", limits)
    return text
