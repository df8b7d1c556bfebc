"""``JobContext``: what a handler registered with ``pass_context=True`` receives first."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NoReturn

from ..errors import LeaseLost, Retry


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
