"""Periodic jobs: ``@app.periodic(cron=...)`` / ``@app.periodic(every=...)``.

A periodic task is a task plus a schedule. Every worker of the app runs a ``Scheduler``
(``pgqueue.maintenance.scheduler``) that enqueues one job per tick, with ``run_at`` set
to the tick. Exactly one job per tick however many workers run: the ``periodic`` table
holds each schedule's ``last_tick``, and a tick's job is inserted by the same statement
that moves ``last_tick`` forward with a compare-and-set, so only one worker's move
succeeds (see ``periodic_advance`` in queries.sql).

Each job has ``run_at`` = its tick and ``dedupe_key`` = ``periodic:<name>:<tick>``
(``tick_key``): the key names the tick for good (a retry moves ``run_at``), and no second
unfinished job for the same tick can exist.

Lateness: a tick at most ``grace`` seconds late (default 10) is on time and always gets
its job, so a quick restart or a stall of every scheduler loses no tick. Older ticks
were missed (no worker ran); ``catch_up`` decides: ``"latest"`` (default) enqueues the
most recent missed tick unless an on-time tick follows it, and skips the rest; ``"none"``
skips them all.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from .cron import Cron, Every, make_schedule, parse_schedule
from .errors import ConfigurationError, InvalidJobError
from .jobspec import JobSpec, check_task_name
from .tasks import Task

if TYPE_CHECKING:
    from .app import App

CATCH_UP = ("latest", "none")
DEFAULT_GRACE = 10.0
MAX_TICKS_PER_PASS = 100
# Options that describe the task itself: only when @app.periodic registers the function.
_TASK_ONLY = {"timeout", "retry", "no_retry_for", "pass_context"}
_JOB_OPTIONS = {"queue", "priority", "max_attempts"}
_TICK = timedelta(microseconds=1)


def tick_key(name: str, tick: datetime) -> str:
    """The dedupe key of a schedule's job for one tick: ``periodic:<name>:<tick>``, the
    tick in ISO 8601 UTC (``periodic:report:2026-11-26T10:05:00+00:00``). It stays on the
    job, so a query finds the job of any tick even after a retry moved its ``run_at``."""
    return f"periodic:{name}:{tick.astimezone(UTC).isoformat()}"


@dataclass(frozen=True)
class Plan:
    """What a scheduler pass does for one schedule: enqueue a job for each of ``ticks``
    and move ``last_tick`` to ``advance_to``. ``skipped``: the first and last tick that
    get no job (missed ticks), or None."""

    ticks: list[datetime]
    advance_to: datetime
    skipped: tuple[datetime, datetime] | None = None


@dataclass(frozen=True)
class Periodic:
    """A registered schedule: which task, when, with which arguments and options."""

    name: str
    task: Task
    schedule: Cron | Every
    catch_up: str = "latest"
    grace: float = DEFAULT_GRACE
    job: dict[str, Any] = field(default_factory=dict, compare=False)
    """The job's validated parameters: queue, task, args, kwargs (JSON), priority,
    max_attempts (see ``jobspec.to_params``)."""

    def plan(
        self, last_tick: datetime, now: datetime, limit: int = MAX_TICKS_PER_PASS
    ) -> Plan | None:
        """What to enqueue at ``now`` (the database's clock) after ``last_tick``; None if
        no tick is due. At most ``limit`` jobs: with more on-time ticks, ``advance_to``
        stops at the last one planned and the next pass goes on from there."""
        first = self.schedule.next_after(last_tick)
        if first > now:
            return None
        newest = self.schedule.last_at_or_before(now)
        cutoff = now - timedelta(seconds=self.grace)
        t = first if first >= cutoff else self.schedule.next_after(cutoff - _TICK)
        ticks: list[datetime] = []
        while t <= now and len(ticks) < limit:
            ticks.append(t)
            t = self.schedule.next_after(t)
        truncated = bool(ticks) and t <= now
        if not ticks and self.catch_up == "latest":
            ticks = [newest]  # older than the grace: on-time ticks would have been found
        skipped = None
        if not ticks or ticks[0] != first:
            last_skipped = self.schedule.last_at_or_before(ticks[0] - _TICK) if ticks else newest
            skipped = (first, last_skipped)
        return Plan(ticks, ticks[-1] if truncated else newest, skipped)


def declare(
    app: App,
    *,
    cron: str | None = None,
    every: float | timedelta | str | None = None,
    tz: str | None = None,
    name: str | None = None,
    catch_up: str = "latest",
    grace: float = DEFAULT_GRACE,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    **options: Any,
) -> Callable[[Callable[..., Any]], Task]:
    """The decorator behind ``App.periodic``.

    ``cron`` (5 fields or an alias, read in ``tz``, default UTC) or ``every`` (seconds >= 1,
    a timedelta or a duration such as ``"5m"``, ticks aligned to the epoch): exactly one.
    ``name``: the schedule's name, unique per app; on a plain function also the task's
    name (default ``module.function``). ``catch_up`` ``"latest"``/``"none"`` and ``grace``
    (seconds): see the module docstring. ``args``/``kwargs``: the arguments of every job.
    Other options go to ``app.task`` (``queue``, ``priority``, ``max_attempts``, ``timeout``,
    ``retry``, ``no_retry_for``, ``pass_context``). Decorating a ``Task`` (stacked on
    ``@app.task`` or another ``@app.periodic``) adds a schedule to it; then only
    ``queue``/``priority``/``max_attempts`` may be given, for this schedule's jobs.

    Raises ``ConfigurationError`` (nothing registered) for a bad schedule or option,
    arguments that are not JSON, or a schedule name already in use.
    """
    unknown = set(options) - _TASK_ONLY - _JOB_OPTIONS
    if unknown:
        raise ConfigurationError(
            f"unknown option(s) for app.periodic: {', '.join(sorted(unknown))}; options: "
            "cron, every, tz, name, catch_up, grace, args, kwargs, "
            + ", ".join(sorted(_TASK_ONLY | _JOB_OPTIONS))
        )
    schedule = make_schedule(cron, every, tz)
    if catch_up not in CATCH_UP:
        raise ConfigurationError(f"catch_up must be 'latest' or 'none', got {catch_up!r}")
    if (
        isinstance(grace, bool)
        or not isinstance(grace, (int, float))
        or not math.isfinite(grace)
        or not 0 <= grace <= 86_400
    ):
        raise ConfigurationError(f"grace must be between 0 and 86400 seconds, got {grace!r}")

    def attach(func: Callable[..., Any]) -> Task:
        if isinstance(func, Task):
            extra = set(options) & _TASK_ONLY
            if extra:
                raise ConfigurationError(
                    f"task {func.name!r} is registered already: give "
                    f"{', '.join(sorted(extra))} to @app.task, not to @app.periodic"
                )
            task = func
        else:
            task_options: dict[str, Any] = {**options, "name": name} if name else options
            task = app._register(func, **task_options)
        schedule_name = name or task.name
        job_options = {k: v for k, v in options.items() if k in _JOB_OPTIONS}
        try:
            check_task_name(schedule_name)
            job = app._params(
                JobSpec(task.name, args, {} if kwargs is None else kwargs, **job_options)
            )
        except InvalidJobError as exc:
            raise ConfigurationError(f"periodic {schedule_name!r}: {exc}") from None
        entry = Periodic(schedule_name, task, schedule, catch_up, float(grace), job)
        old = app.schedules.get(schedule_name)
        if old is not None and (old != entry or old.job != entry.job):
            raise ConfigurationError(
                f"periodic schedule name {schedule_name!r} is registered twice; pass name="
            )
        app.schedules[schedule_name] = entry
        return task

    def register(func: Callable[..., Any]) -> Task:
        known = set(app.tasks)
        try:
            return attach(func)
        except ConfigurationError:  # nothing stays registered: not the task either
            for task_name in set(app.tasks) - known:
                del app.tasks[task_name]
            raise

    return register


def status(app: App) -> list[dict[str, Any]]:
    """Every schedule in the database (also those no longer in the code), with its last
    and next tick (from the stored schedule text) and whether this app declares it."""
    with app.pool().connection() as conn:
        rows = conn.execute(app.query("periodic_list"), {}).fetchall()
    out = []
    for name, text, last_tick, updated_at in rows:
        try:
            next_tick: datetime | None = parse_schedule(text).next_after(last_tick)
        except (ConfigurationError, ArithmeticError, ValueError, RuntimeError):
            next_tick = None  # a row written by hand (or by a newer pgqueue)
        declared = app.schedules.get(name)
        out.append(
            {
                "name": name,
                "schedule": text,
                "last_tick": last_tick,
                "next_tick": next_tick,
                "task": declared.task.name if declared else None,
                "catch_up": declared.catch_up if declared else None,
                "updated_at": updated_at,
            }
        )
    return out
