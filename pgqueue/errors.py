"""The exception tree. Everything pgqueue raises on purpose is a ``PgQueueError``.

```
PgQueueError
 +-- ConfigurationError        bad DSN, schema name, app path, settings; says what to fix
 |    +-- SchemaNotMigrated    the schema is missing or older than this pgqueue
 +-- InvalidJobError (ValueError)  bad task/queue name, arguments that are not JSON
 |    +-- UnknownTaskError     a task name the app never registered
 +-- JobNotFound (LookupError)  no job with that id
 +-- JobFailed                 job.result(): the job ended failed (its last error attached)
 |    +-- JobCancelled         ... or cancelled (on request, or a job it depended on failed)
 +-- ResultTimeout (TimeoutError)  job.result(timeout=...): not finished in time
 +-- DrainTimeout (TimeoutError)   app.drain(timeout=...): jobs still ran when it stopped
 +-- UnknownQueueError (LookupError)  no job or pause record names that queue
 +-- LeaseLost                 a fenced write changed nothing: another worker owns the job now
 +-- JobTimeout                a handler ran past its task's timeout
 +-- Retry                     raised by a handler: run me again after ``after`` seconds
 +-- Snooze                    raised by a handler: not yet, look again later (no attempt)
 +-- Cancel                    raised by a handler: end cancelled, do not retry
```
"""

from __future__ import annotations


class PgQueueError(Exception):
    """Base of every error pgqueue raises on purpose."""


class ConfigurationError(PgQueueError):
    """The configuration cannot work; the message names the fix."""


class SchemaNotMigrated(ConfigurationError):
    """The pgqueue schema is missing or at an older revision: run ``pgqueue migrate``."""


class InvalidJobError(PgQueueError, ValueError):
    """A job cannot be enqueued as given (names, arguments, options). Nothing was written."""


class UnknownTaskError(InvalidJobError):
    """The task name is not registered on this app."""


class LeaseLost(PgQueueError):
    """The worker no longer owns the job (its lease expired and the job was reclaimed).

    Raised by fenced writes and by ``JobContext.extend_lease``; the worker discards the
    handler's result when it sees this.
    """


class JobTimeout(PgQueueError):
    """The handler ran past its task's ``timeout``."""


class Retry(PgQueueError):
    """Raise it in a handler to run the job again after ``after`` seconds (None: the
    task's backoff), e.g. ``raise Retry(after=600)`` when a service says "later". It uses
    an attempt like any failure: once ``max_attempts`` are used up the job ends
    ``failed`` (its last error has kind ``retry`` and ``reason`` as its message).
    ``ctx.retry(countdown=...)`` raises it for you (Celery's ``self.retry``)."""

    def __init__(self, after: float | None = None, reason: str = "") -> None:
        if after is not None and (
            isinstance(after, bool)
            or not isinstance(after, (int, float))
            or not 0 <= after <= 100 * 366 * 86400  # (NaN and infinity fail this too)
        ):
            raise ValueError(f"Retry(after=...) must be seconds from 0 to 100 years, got {after!r}")
        self.after = None if after is None else float(after)
        self.reason = reason
        super().__init__(reason or f"retry requested (after {after}s)")


#: How many claims of a job may use no attempt (snoozes, shutdown releases, hand-backs)
#: before a Snooze fails it instead (kind ``snoozed``).
MAX_SNOOZES = 1000


class Snooze(PgQueueError):
    """Raise it in a handler for "not yet: look again in ``seconds``" (a resource not
    ready, a rate limit upstream). The job goes back to queued, due then, WITHOUT using
    an attempt. Bounded: once ``MAX_SNOOZES`` (1000) of its claims used no attempt, a
    Snooze fails it instead (kind ``snoozed``), so it cannot snooze forever unnoticed."""

    def __init__(self, seconds: float) -> None:
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, (int, float))
            or not 0 <= seconds <= 366 * 86400  # (NaN and infinity fail this too)
        ):
            raise ValueError(f"Snooze(seconds) must be from 0 to a year, got {seconds!r}")
        self.seconds = float(seconds)
        super().__init__(f"snoozed for {seconds}s")


class Cancel(PgQueueError):
    """Raise it in a handler to end the job ``cancelled`` with ``reason``, not retried
    (``job.result()`` raises ``JobCancelled``): the work is no longer wanted."""

    def __init__(self, reason: str = "") -> None:
        self.reason = reason
        super().__init__(reason or "cancelled by the handler")


class JobNotFound(PgQueueError, LookupError):
    """No job has that id (it never existed, or was pruned)."""


class UnknownQueueError(PgQueueError, LookupError):
    """No job and no pause record names that queue."""


class JobFailed(PgQueueError):
    """``job.result()`` / ``await job.wait()``: the job ended ``failed`` (the dead letter).

    ``job_id``, ``task``, ``state``, and from its last recorded error: ``kind`` (``error``,
    ``timeout``, ``lost``, ``result_not_json``, ``undecodable``: args/kwargs no worker can
    decode, ``unknown_task``: no live worker knew the task for --unknown-task-timeout),
    ``error_type`` (the exception's qualified name, if any) and ``error_message``.
    """

    def __init__(
        self,
        job_id: int,
        task: str,
        state: str,
        kind: str | None = None,
        error_type: str | None = None,
        error_message: str | None = None,
    ) -> None:
        self.job_id = job_id
        self.task = task
        self.state = state
        self.kind = kind
        self.error_type = error_type
        self.error_message = error_message
        super().__init__(self._describe())

    def _describe(self) -> str:
        text = f"job {self.job_id} ({self.task}) {self.state}"
        message = self.error_message or ""
        short = (self.error_type or "").rsplit(".", 1)[-1]
        if short and not message.startswith(short):
            message = f"{short}: {message}" if message else short
        if self.kind and self.kind not in ("error", "cancelled"):
            message = f"[{self.kind}] {message}" if message else f"[{self.kind}]"
        return f"{text}: {message}" if message else text

    def __reduce__(self) -> tuple[object, ...]:
        return (
            type(self),
            (
                self.job_id,
                self.task,
                self.state,
                self.kind,
                self.error_type,
                self.error_message,
            ),
        )


class JobCancelled(JobFailed):
    """The job ended ``cancelled``: on request (``cancel_job``), or because a job it
    depended on (``after=``) failed or was cancelled (``kind == "dependency"``)."""


class ResultTimeout(PgQueueError, TimeoutError):
    """The job did not finish within the ``timeout`` given to ``job.result()`` /
    ``job.wait()``; ``state`` is its state when the wait gave up. The job itself is not
    touched: wait again, or cancel it."""

    def __init__(self, job_id: int, state: str, message: str) -> None:
        self.job_id = job_id
        self.state = state
        super().__init__(message)

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.job_id, self.state, str(self)))


class DrainTimeout(PgQueueError, TimeoutError):
    """``app.drain(timeout=...)`` stopped with jobs still running; they were handed back
    to the queue (as a worker's shutdown does)."""
