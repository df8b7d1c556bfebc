"""Claimed rows to jobs, one bad row at a time: a row that cannot be decoded is a failed
job (kind ``undecodable``), never an exception out of the claim loop.

Any SQL client can enqueue (``pgqueue.enqueue()``, a raw INSERT), so args and kwargs can
hold what Python cannot decode: JSON nested so deeply that the decoder hits the
recursion limit, a number with more digits than ``int()`` accepts, or (a row put in by
hand past the table's checks) args that are not an array or kwargs that are not an
object; or a typed value (``pgqueue.codec``) whose type the worker's code does not
register. Such a job fails alone at its first attempt, whatever its ``max_attempts``
(running it again would fail the same way); the jobs claimed with it run normally.

The batch is decoded in one list comprehension first, as before (``Claimed.from_row``
is on every job's path); only a batch in which some row raised is decoded again row by
row, so a normal batch pays nothing for this.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from ..codec import BadTag
from .completer import Completer
from .heartbeat import Held
from .rows import _args, _kwargs, _WrongType
from .runner import Claimed, Outcome, _storable

log = logging.getLogger("pgqueue.worker")


def decode_rows(rows: Sequence[tuple[Any, ...]]) -> tuple[list[Claimed], list[Outcome]]:
    """The claimed rows as jobs, and an ``undecodable`` final failure for each row that
    cannot be decoded (the caller holds those and hands them to the completer, whose
    write is fenced like any other)."""
    try:
        return [Claimed.from_row(r) for r in rows], []
    except Exception:  # some row is poison: find it, keep the others
        pass
    jobs: list[Claimed] = []
    poison: list[Outcome] = []
    for row in rows:
        try:
            jobs.append(Claimed.from_row(row))
        except Exception as exc:
            poison.append(undecodable(row, exc))
    return jobs, poison


def fail_undecodable(poison: list[Outcome], held: Held, completer: Completer) -> None:
    """Hold the poison rows' jobs like any claimed job (their leases renewed) and hand
    their failures to the completer, which writes them fenced (``job_fail_fenced``)."""
    held.add_many([(o.job.id, o.job.attempt) for o in poison])
    completer.joblog.flush()  # the per-job lines before these, in order
    for outcome in poison:
        log.error(
            "job %d %s attempt %d: %s",
            outcome.job.id,
            outcome.job.task,
            outcome.job.attempt,
            (outcome.error or {}).get("message"),
            extra={"job_id": outcome.job.id, "task": outcome.job.task, "event": "undecodable"},
        )
        completer.put(outcome)


def undecodable(row: tuple[Any, ...], exc: Exception) -> Outcome:
    """The final failure of a claimed row whose args/kwargs cannot be decoded; the
    message names the field and why."""
    job = Claimed(row[0], row[1], row[2], [], {}, row[5], row[6], row[7], row[8], row[9])
    job.headers = row[11] if len(row) > 11 else None  # (row[10]: the checkpoint)
    field, cause = _which(row, exc)
    wrong_type = isinstance(cause, _WrongType)
    if wrong_type:
        why = f"{field} are of the wrong JSON type: {cause}"
    else:
        why = f"{field} {_why(cause)} ({type(cause).__name__}: {_short(cause)})"
    message = (
        f"{why}; the job cannot run on any worker: enqueue it again with plain JSON "
        "arguments (args an array, kwargs an object)"
    )
    return Outcome(
        job,
        ok=False,
        final=True,
        error={
            "attempt": job.attempt,
            "kind": "undecodable",
            "type": None if wrong_type else f"{type(cause).__module__}.{type(cause).__qualname__}",
            "message": _storable(message),
            "traceback": None,  # not the code's fault: the row is
        },
    )


def _which(row: tuple[Any, ...], exc: Exception) -> tuple[str, Exception]:
    """Which of args and kwargs fails, and its own exception (``exc`` if neither does
    alone, e.g. a MemoryError)."""
    for field, text, decode, want, empty in (
        ("args", row[3], _args, list, "[]"),
        ("kwargs", row[4], _kwargs, dict, "{}"),
    ):
        if text is None:  # NOT NULL dropped by hand
            return field, _WrongType(field, None, want)
        try:
            if text != empty:
                decode(text)
        except Exception as cause:
            return field, cause
    return "args/kwargs", exc


def _why(exc: Exception) -> str:
    if isinstance(exc, BadTag):
        return "hold a typed value this worker cannot decode"
    if isinstance(exc, RecursionError):
        return "are nested too deeply for Python's JSON decoder"
    if isinstance(exc, MemoryError):
        return "are too large to decode on this worker"
    return "are not decodable by Python's JSON decoder"


def _short(exc: Exception) -> str:
    """The exception's message, at most 300 characters."""
    try:
        text = str(exc)
    except Exception:
        text = "?"
    return text if len(text) <= 300 else text[:297] + "..."
