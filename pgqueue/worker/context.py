"""``JobContext``: what a handler registered with ``pass_context=True`` receives first."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

from ..errors import LeaseLost, PgQueueError, Retry
from ..limits import DEFAULT_LIMITS, Limits

if TYPE_CHECKING:
    from .transaction import HandlerTransaction, TransactionSource


@dataclass
class JobContext:
    """The running job as its handler sees it.

    ``lease_lost`` is set when the worker learns another worker may now own the job
    (the lease expired and was reclaimed): the handler should stop; whatever it returns
    is thrown away. ``cancelled`` is set when someone cancelled the job (cancel_job):
    a sync handler should check it and return; an async one is cancelled for it. Either
    way the job ends ``cancelled``. ``extend_lease(seconds)`` asks for more time; it
    raises ``LeaseLost`` when the lease is already gone.
    """

    job_id: int
    task: str
    attempt: int
    queue: str
    worker_id: str
    lease_lost: threading.Event = field(default_factory=threading.Event)
    cancelled: threading.Event = field(default_factory=threading.Event)
    _extend: Callable[[int, int, float], bool] | None = field(default=None, repr=False)
    checkpoint_state: Any = None
    """The state the last ``checkpoint()`` of an earlier attempt stored (None on a first
    run, or if no attempt stored one): resume from it."""
    _progress: Callable[[int, int, dict[str, Any]], None] | None = field(default=None, repr=False)
    _call: Callable[[str, dict[str, Any]], list[Any]] | None = field(default=None, repr=False)
    _limits: Limits = field(default=DEFAULT_LIMITS, repr=False)
    _transactions: TransactionSource | None = field(default=None, repr=False)
    _tx: HandlerTransaction | None = field(default=None, repr=False)

    def transaction(self) -> HandlerTransaction:
        """The handler's database work in the transaction that completes the job:
        ``with ctx.transaction() as conn:`` (sync handlers; ``async with`` in async ones)
        gives a psycopg connection in an open transaction, which commits together with
        the job's success when the handler returns, or rolls back if it raises, is
        cancelled or lost its lease (see ``pgqueue.worker.transaction``). Calling it again
        in the same run gives the same transaction. Raises ``PgQueueError`` outside a
        worker."""
        if self._tx is None:
            if self._transactions is None:
                raise PgQueueError(
                    "ctx.transaction() needs a worker's connections: it works in handlers "
                    "run by pgqueue work (or Worker), not in a JobContext made by hand"
                )
            self._tx = self._transactions.open(self.job_id, self.attempt)
        return self._tx

    def retry(self, countdown: float | None = None, reason: str = "") -> NoReturn:
        """Run the job again after ``countdown`` seconds (None: the task's backoff):
        raises ``Retry``, so nothing after it runs. Uses an attempt; past
        ``max_attempts`` the job ends failed. Celery's ``self.retry(countdown=...)``."""
        raise Retry(after=countdown, reason=reason)

    def extend_lease(self, seconds: float) -> None:
        """Make the lease last at least ``seconds`` from now (fenced; thread-safe).

        Raises ``LeaseLost`` if the job is no longer ours, ``ValueError`` for seconds <= 0.
        """
        if seconds <= 0:
            raise ValueError("extend_lease needs seconds > 0")
        if self._extend is None or not self._extend(self.job_id, self.attempt, seconds):
            self.lease_lost.set()
            raise LeaseLost(f"job {self.job_id} attempt {self.attempt}: lease lost")

    def progress(self, done: float, total: float | None = None, message: str | None = None) -> None:
        """Say how far the job has got: ``done`` of ``total`` (any unit), and a message.

        Cheap (call it as often as you like): the last value is kept in memory and
        written, fenced, with the next heartbeat (every lease/3). Shown in the
        ``running_jobs`` view, ``pgqueue jobs list``/``show`` and ``app.admin``. Raises
        ``InvalidJobError`` (a ``ValueError``) for a negative or non-number ``done`` or
        ``total``; a message longer than 500 characters is cut."""
        from .progress import progress_value

        value = progress_value(done, total, message)
        if self._progress is not None:
            self._progress(self.job_id, self.attempt, value)

    def checkpoint(self, state: Any) -> None:
        """Store ``state`` (JSON) durably now; the next attempt of this job (after a
        crash, a lost lease or a retry) starts with it as ``ctx.checkpoint_state``.

        A fenced write of its own (one round trip; from an ``async def`` handler it blocks
        the loop for that long). Raises ``InvalidJobError`` (nothing stored) if ``state`` is
        not JSON or breaks the App's payload limits, ``LeaseLost`` (and sets
        ``lease_lost``) if the job is no longer ours, ``PgQueueError`` if the database
        cannot be reached."""
        from .progress import checkpoint_json

        text = checkpoint_json(state, self._limits)
        if self._call is None:
            raise LeaseLost(f"job {self.job_id}: no worker to store the checkpoint")
        params = {"id": self.job_id, "attempt": self.attempt, "worker_id": self.worker_id}
        rows = self._call("job_checkpoint_fenced", {**params, "state": text})
        if not rows:
            self.lease_lost.set()
            raise LeaseLost(
                f"job {self.job_id} attempt {self.attempt}: lease lost; checkpoint not stored"
            )
