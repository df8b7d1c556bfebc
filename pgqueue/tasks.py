"""Tasks: a registered function with its defaults, and the retry policy.

``@app.task`` wraps a function in a ``Task``. Calling the task runs the function here
and now; ``defer``/``defer_async`` enqueue it; ``spec`` builds a ``JobSpec`` for
``enqueue_many``; ``options`` overrides defaults (queue, priority, connection, ...).
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .errors import InvalidJobError
from .jobspec import JobSpec

if TYPE_CHECKING:
    from .app import App
    from .results import Job


@dataclass(frozen=True)
class RetryPolicy:
    """Which errors retry, and after how long: exponential backoff with jitter,
    ``base * factor**(n-1)`` capped at ``max_delay``.

    ``jitter`` is the fraction of the delay drawn at random (0.25 means the delay lands
    between 75% and 100% of the computed value), so a burst of failures does not come
    back as a burst. ``retry_on``: the exception types that retry (default: every
    ``Exception``); ``no_retry_for``: types that fail at once even so (e.g. ``(ValueError,)``
    for bad input that will not get better). An exception that does not retry ends the job
    ``failed`` on this attempt. ``Retry`` raised by the handler always retries (it asks
    to); ``SystemExit`` and ``KeyboardInterrupt`` never do. Raises ``ValueError`` naming
    the bad field.
    """

    base: float = 1.0
    factor: float = 2.0
    max_delay: float = 3600.0
    jitter: float = 0.25
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    no_retry_for: tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        if self.base < 0 or self.factor < 1 or self.max_delay < 0:
            raise ValueError("RetryPolicy needs base >= 0, factor >= 1 and max_delay >= 0")
        if not 0 <= self.jitter <= 1:
            raise ValueError("RetryPolicy.jitter is a fraction between 0 and 1")
        for name in ("retry_on", "no_retry_for"):
            value = getattr(self, name)
            if isinstance(value, type):  # one class given bare: take it as a tuple of one
                value = (value,)
                object.__setattr__(self, name, value)
            if not isinstance(value, tuple) or not all(
                isinstance(t, type) and issubclass(t, BaseException) for t in value
            ):
                raise ValueError(
                    f"RetryPolicy.{name} takes exception classes, e.g. {name}=(TimeoutError, "
                    f"ConnectionError); got {value!r}"
                )

    def retries(self, exc: BaseException) -> bool:
        """Whether ``exc`` retries under this policy (``retry_on`` and not
        ``no_retry_for``)."""
        return isinstance(exc, self.retry_on) and not isinstance(exc, self.no_retry_for)

    def delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failure (1 for the first)."""
        exponent = max(failures - 1, 0)
        raw = self.max_delay if exponent > 64 else self.base * self.factor**exponent
        capped = min(raw, self.max_delay)
        return capped * (1 - self.jitter * random.random())


@dataclass
class Task:
    """A function registered on an ``App``, with the defaults its jobs get."""

    app: App
    name: str
    func: Callable[..., Any]
    queue: str = "default"
    priority: int = 0
    max_attempts: int = 20
    timeout: float | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    no_retry_for: tuple[type[BaseException], ...] = ()
    pass_context: bool = False

    is_async: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        # True for ``async def`` handlers (run as asyncio tasks, not in threads); computed
        # once, it is read for every job.
        self.is_async = inspect.iscoroutinefunction(self.func)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.func(*args, **kwargs)

    def spec(self, *args: Any, **kwargs: Any) -> JobSpec:
        """A ``JobSpec`` with this task's defaults, for ``App.enqueue_many``."""
        return JobSpec(
            self.name,
            args,
            kwargs,
            queue=self.queue,
            priority=self.priority,
            max_attempts=self.max_attempts,
        )

    def defer(self, *args: Any, **kwargs: Any) -> Job:
        """Enqueue with the task's defaults on pgqueue's own pool; returns the ``Job``
        (the id, which can wait for the result: ``job.result()``)."""
        return self.app.enqueue(self, args, kwargs)

    async def defer_async(self, *args: Any, **kwargs: Any) -> Job:
        """``defer`` for asyncio code."""
        return await self.app.enqueue_async(self, args, kwargs)

    def delay(self, *args: Any, **kwargs: Any) -> Job:
        """Celery's name for ``defer``: ``process_evaluation.delay(eval_id)``."""
        return self.app.enqueue(self, args, kwargs)

    def apply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        *,
        countdown: float | None = None,
        eta: datetime | None = None,
        queue: str | None = None,
        priority: int | None = None,
        **options: Any,
    ) -> Job:
        """Celery's ``apply_async``: ``countdown`` (seconds) is pgqueue's ``delay``,
        ``eta`` (a timezone-aware datetime) its ``run_at``; ``queue`` and ``priority`` as
        in ``options`` (higher runs first, as in Celery's Redis transport). Any other
        pgqueue option (``dedupe_key``, ``after``, ``connection``, ...) may follow.
        Raises ``InvalidJobError`` naming a Celery option pgqueue does not have
        (``expires``, ``link``, ...) and for bad values; nothing is written then."""
        unknown = sorted(set(options) - _APPLY_ASYNC_OPTIONS)
        if unknown:
            raise InvalidJobError(
                f"apply_async: pgqueue has no option {', '.join(map(repr, unknown))}; it "
                f"takes args, kwargs, countdown, eta, queue, priority and "
                f"{', '.join(sorted(_APPLY_ASYNC_OPTIONS))}"
            )
        if countdown is not None and eta is not None:
            raise InvalidJobError("apply_async: give countdown or eta, not both")
        opts: dict[str, Any] = dict(options)
        if countdown is not None:
            opts["delay"] = countdown
        if eta is not None:
            opts["run_at"] = eta
        if queue is not None:
            opts["queue"] = queue
        if priority is not None:
            opts["priority"] = priority
        return self.app.enqueue(
            self, () if args is None else args, {} if kwargs is None else kwargs, **opts
        )

    def defer_many(self, items: Any, **options: Any) -> list[Job]:
        """Enqueue one job per item (a dict of keyword arguments or a list of positional
        ones) in one COPY; options: queue, priority, max_attempts, connection. Returns
        the ids in order. See ``App.enqueue_batch``."""
        return self.app.enqueue_batch(self, items, **options)

    def options(self, **options: Any) -> BoundTask:
        """Override enqueue options: queue, priority, run_at, delay, max_attempts,
        dedupe_key, unique_for, replace, group_key, after (job ids that must succeed
        first), connection (see ``App.enqueue``).
        ``add.options(connection=conn).defer(1, 2)``."""
        return BoundTask(self, options)


#: What ``apply_async`` passes on besides its Celery-named arguments.
_APPLY_ASYNC_OPTIONS = frozenset(
    {"max_attempts", "dedupe_key", "unique_for", "replace", "group_key", "after", "connection"}
)


@dataclass(frozen=True)
class BoundTask:
    """A task with enqueue options fixed; see ``Task.options``."""

    task: Task
    opts: dict[str, Any]

    def defer(self, *args: Any, **kwargs: Any) -> Job:
        return self.task.app.enqueue(self.task, args, kwargs, **self.opts)

    async def defer_async(self, *args: Any, **kwargs: Any) -> Job:
        return await self.task.app.enqueue_async(self.task, args, kwargs, **self.opts)
