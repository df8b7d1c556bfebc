"""Run one claimed job's handler and turn what happened into an ``Outcome``.

``async def`` handlers run as asyncio tasks (a timeout cancels them). Plain ``def``
handlers run in a thread: in the worker's pool when the task has no timeout, in a
thread of their own when it has one, because a timed-out thread cannot be killed. It
is abandoned (it keeps running until the function returns) and the job is failed with
a timeout error; write sync handlers that can time out to be safe to run twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import psycopg

from ..errors import Cancel, JobTimeout, PgQueueError, Retry, Snooze
from ..hooks import Hooks
from ..tasks import RetryPolicy, Task
from .context import JobContext
from .rows import _args, _json, _kwargs
from .transaction import HandlerTransaction, describe_commit_failure


@dataclass
class Claimed:
    """A job as the claim returned it."""

    id: int
    queue: str
    task: str
    args: list[Any]
    kwargs: dict[str, Any]
    attempt: int
    max_attempts: int
    error_count: int
    lost_count: int
    priority: int
    checkpoint: Any = None  # what an earlier attempt stored with ctx.checkpoint()
    headers: str | None = None  # JSON text (W3C trace context, ...) or None: see hooks.py
    waited: float = 0.0  # seconds from due (enqueued, or backoff over) to claimed
    trace: tuple[str, str] | None = None  # (trace id, span id) of its run: pgqueue.otel

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Claimed:
        """From ``job_claim_batch``'s row (psycopg has made the numbers ints already);
        args/kwargs arrive as JSON text (cast in the query) and empty ones are not parsed
        at all: this runs for every job. Raises whatever decoding raises (a RecursionError
        for args nested too deeply, a ValueError, ``_WrongType``): ``decode.claims`` turns
        that into an ``undecodable`` failure of that job alone."""
        args, kwargs = row[3], row[4]
        return cls(
            row[0],
            row[1],
            row[2],
            [] if args == "[]" else _args(args),
            {} if kwargs == "{}" else _kwargs(kwargs),
            row[5],
            row[6],
            row[7],
            row[8],
            row[9],
            None if row[10] is None else _json(row[10]),
            row[11],
            row[12],
        )

    def header_map(self) -> dict[str, str]:
        """The headers stored at enqueue (``around_enqueue`` hooks: the W3C trace
        context, ...); empty if there are none or they are not a JSON object."""
        if not self.headers:
            return {}
        try:
            value = json.loads(self.headers)
        except ValueError:
            return {}
        return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


@dataclass
class Outcome:
    """What the handler did: ``result_json`` on success, ``error`` on failure."""

    job: Claimed
    ok: bool
    result_json: str = "null"
    error: dict[str, Any] | None = None
    final: bool = False
    backoff: float = 0.0
    duration: float = 0.0
    written: bool = False
    cancelled: bool = False
    release: bool = False  # an unknown task: handed back, no attempt used
    snooze: float | None = None  # Snooze(seconds): back to queued, no attempt used
    message: str | None = None  # why it ended cancelled (Cancel(reason))
    in_tx: bool = False  # done in the handler's own transaction (ctx.transaction())...
    committed: bool = False  # ...and committed (False: the lease was lost, rolled back)
    has_waiting: bool = False  # (committed) a job waits for this one (after=)
    exception: BaseException | None = None  # what the handler raised (for on_failure hooks)


# A NUL character, which json.dumps writes as \u0000 and PostgreSQL's jsonb refuses. An
# odd number of backslashes before "u0000" is an escape; an even number is literal text.
_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"))
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def _result_json(value: Any) -> str | None:
    """The result as JSON, or None when it cannot be stored: not JSON (NaN and infinity
    included), or a string with a NUL character, which jsonb refuses. Dict keys that are
    not strings become strings, as ``json`` does."""
    if value is None:
        return "null"
    try:
        text = _ENCODER.encode(value)
    except (TypeError, ValueError, RecursionError):
        return None
    return None if "\\u0000" in text and _JSON_NUL.search(text) else text


def _why_not_json(value: Any) -> str:
    try:
        _ENCODER.encode(value)
    except (TypeError, ValueError, RecursionError) as exc:
        reason = str(exc)
        return "NaN and infinity are not JSON" if "Out of range float" in reason else reason
    return "it contains a NUL character (\\u0000), which PostgreSQL's jsonb cannot store"


def result_not_json(job: Claimed, value: Any, started: float) -> Outcome:
    """The outcome of a handler whose return value cannot be stored as its result: the
    job fails for good (kind ``result_not_json``; running it again would redo its work
    and return the same), rather than succeed with its result silently lost."""
    try:
        reason = _why_not_json(value)
    except Exception:  # a value whose repr/str fails inside the encoder's message
        reason = "it cannot be encoded"
    message = (
        f"the handler's return value ({type(value).__name__}) is not JSON ({reason}); return "
        "plain str/int/float/bool/None/list/dict values (e.g. a datetime as .isoformat()), "
        "or None for no result"
    )
    return Outcome(
        job,
        ok=False,
        final=True,
        error={
            "attempt": job.attempt,
            "kind": "result_not_json",
            "type": None,
            "message": _storable(message),
            "traceback": None,
        },
        duration=time.monotonic() - started,
    )


def _storable(text: str) -> str:
    """``text`` without NUL characters, which PostgreSQL cannot store in text or jsonb."""
    return text.replace("\x00", "\\x00")


def _error(job: Claimed, kind: str, exc: BaseException | None, message: str) -> dict[str, Any]:
    tb = "".join(traceback.format_exception(exc)) if exc is not None else None
    return {
        "attempt": job.attempt,
        "kind": kind,
        "type": f"{type(exc).__module__}.{type(exc).__qualname__}" if exc else None,
        "message": _storable(message),
        "traceback": None if tb is None else _storable(tb),
    }


async def _call_sync_in_own_thread(
    func: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]
) -> Any:
    """Run ``func`` in a dedicated daemon thread; the await can be abandoned on timeout."""
    loop = asyncio.get_running_loop()
    fut: Future[Any] = Future()

    def target() -> None:
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            _deliver(loop, _set_exception, fut, exc)
        else:
            _deliver(loop, _set_result, fut, result)

    threading.Thread(target=target, name="pgqueue-job", daemon=True).start()
    return await asyncio.wrap_future(fut)


def _deliver(
    loop: asyncio.AbstractEventLoop,
    setter: Callable[[Future[Any], Any], None],
    fut: Future[Any],
    value: Any,
) -> None:
    """Hand an abandoned thread's outcome to the loop; nobody waits for it any more if the
    loop has closed meanwhile (the worker stopped), which is not an error."""
    with contextlib.suppress(RuntimeError):  # "Event loop is closed"
        loop.call_soon_threadsafe(setter, fut, value)


def _set_result(fut: Future[Any], value: Any) -> None:
    if not fut.done():
        fut.set_result(value)


def _set_exception(fut: Future[Any], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)


class _Timeout(Exception):
    """Our own timeout, told apart from a TimeoutError the handler raised itself."""


async def _with_timeout(awaitable: Any, seconds: float) -> Any:
    try:
        return await asyncio.wait_for(awaitable, seconds)
    except TimeoutError as exc:
        raise _Timeout from exc


def _describe(exc: BaseException) -> str:
    """``Type: message``, even for an exception whose ``str()`` itself raises."""
    try:
        text = str(exc)
    except Exception:
        text = "<exception str() failed>"
    return f"{type(exc).__name__}: {text}"


def failure(job: Claimed, task: Task | None, exc: BaseException, started: float) -> Outcome:
    """The outcome of a handler that raised ``exc`` (any exception, even SystemExit)."""
    if isinstance(exc, Snooze):
        return Outcome(job, ok=False, snooze=exc.seconds, duration=time.monotonic() - started)
    if isinstance(exc, Cancel):
        return Outcome(
            job,
            ok=False,
            cancelled=True,
            message=_storable(f"cancelled by the handler: {exc.reason or 'no reason given'}"),
            duration=time.monotonic() - started,
        )
    retry = task.retry if task is not None else RetryPolicy()
    final = task is not None and isinstance(exc, task.no_retry_for)
    final = final or isinstance(exc, (SystemExit, KeyboardInterrupt)) or not retry.retries(exc)
    backoff = retry.delay(job.error_count + 1)
    kind = "error"
    if isinstance(exc, Retry):  # the handler asked for another run
        kind, final = "retry", False
        backoff = backoff if exc.after is None else exc.after
    try:
        error = _error(job, kind, exc, _describe(exc))
    except Exception:  # a traceback that cannot be formatted must not strand the job
        error = {"attempt": job.attempt, "kind": kind, "message": _describe(exc)}
    return Outcome(
        job,
        ok=False,
        final=final,
        error=error,
        backoff=backoff,
        duration=time.monotonic() - started,
        exception=exc,
    )


async def run_job(
    job: Claimed,
    task: Task | None,
    ctx: JobContext | None,
    executor: ThreadPoolExecutor,
    hooks: Hooks | None = None,
) -> Outcome:
    """Run the handler and return what happened.

    Every exception the handler raises, ``SystemExit`` and ``KeyboardInterrupt``
    included, becomes a failed outcome (those two are final: no retry). Only an
    ``asyncio.CancelledError`` propagates; the caller decides whether it was the
    worker's own cancellation (shutdown, lost lease, cancel request) or the handler's.
    """
    started = time.monotonic()
    if task is None:
        # During a rolling deploy an old worker may claim a new task: it hands the job
        # back without using an attempt (the completer's release), for a worker that
        # knows the task; the UnknownTasks service fails it if none does for too long.
        return Outcome(job, ok=False, release=True)
    args = [ctx, *job.args] if task.pass_context else list(job.args)
    kwargs = dict(job.kwargs)
    # around_run hooks (pgqueue/hooks.py) wrap the call where it runs; none: no wrapper
    func = task.func if hooks is None else hooks.wrap(task.func, task.is_async, job)
    try:
        if task.is_async:
            coro = func(*args, **kwargs)
            if task.timeout is not None:
                value = await _with_timeout(coro, task.timeout)
            else:
                value = await coro
        elif task.timeout is not None:
            value = await _with_timeout(_call_sync_in_own_thread(func, args, kwargs), task.timeout)
        else:
            loop = asyncio.get_running_loop()
            value = await loop.run_in_executor(executor, lambda: func(*args, **kwargs))
    except _Timeout:
        await _roll_back(ctx)
        exc = JobTimeout(f"{task.name} ran past its timeout of {task.timeout}s")
        return Outcome(
            job,
            ok=False,
            final=not task.retry.retries(exc) or isinstance(exc, task.no_retry_for),
            error=_error(job, "timeout", exc, str(exc)),
            backoff=task.retry.delay(job.error_count + 1),
            duration=time.monotonic() - started,
        )
    except asyncio.CancelledError:
        raise  # (the dispatcher rolls back a transaction the handler left open)
    except BaseException as exc:
        await _roll_back(ctx)
        return failure(job, task, exc, started)
    text = _result_json(value)
    if text is None:
        await _roll_back(ctx)
        return result_not_json(job, value, started)
    if ctx is not None and ctx._tx is not None and ctx._tx.open:
        return await _complete_in_transaction(job, task, ctx._tx, text, started)
    return Outcome(job, ok=True, result_json=text, duration=time.monotonic() - started)


async def _roll_back(ctx: JobContext | None) -> None:
    if ctx is not None and ctx._tx is not None and ctx._tx.open:
        await ctx._tx.rollback()


async def _complete_in_transaction(
    job: Claimed, task: Task, tx: HandlerTransaction, text: str, started: float
) -> Outcome:
    """Complete the job in the handler's transaction (ctx.transaction()) and commit: an
    ``in_tx`` outcome, which leaves the completer nothing to write (``committed``: the job
    succeeded; not: the fenced completion matched nothing, the lease was lost and all
    rolled back). A failed statement or commit is a failure with a retry."""
    try:
        committed, waiting = await tx.complete(text)
    except psycopg.Error as exc:
        return failure(job, task, PgQueueError(describe_commit_failure(job.id, exc)), started)
    return Outcome(
        job,
        ok=True,
        result_json=text,
        duration=time.monotonic() - started,
        in_tx=True,
        committed=committed,
        has_waiting=waiting,
    )
