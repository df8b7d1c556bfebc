"""Worker settings, validated where they are built."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigurationError, InvalidJobError
from ..jobspec import check_queue
from ..maintenance.pruner import Retention


@dataclass
class WorkerConfig:
    """How one worker process behaves.

    ``lease``: seconds a claimed job stays ours without a heartbeat (renewed every
    lease/3). ``poll_interval``: longest sleep without a NOTIFY. ``shutdown_timeout``:
    how long SIGTERM waits for running jobs before handing them back.
    ``maintenance_interval``: how often this worker tries the reaper (one worker at a
    time runs it). ``prefetch``: jobs claimed ahead into a local buffer beyond
    ``concurrency`` (off by default; helps many short jobs, hurts long ones).
    ``fast_claims`` (opt-in, labelled in the benchmark): claims commit with
    ``synchronous_commit = off``, saving a disk flush on the wake-up path. A PostgreSQL
    crash can then undo a claim made in its last moments: the job goes back to queued
    and runs again (at-least-once still holds), and the first run's writes are refused
    because every fenced write also matches the worker id. Enqueues, completions and
    failures stay synchronous either way.
    ``retention``: how long finished jobs are kept per state (7/30/7 days), pruned
    every ``prune_interval`` in small batches.
    ``unknown_task_timeout``: a job whose task this worker's app does not know is handed
    back without using an attempt; once no live worker of its queue has known the task
    for this long, its jobs fail with kind ``unknown_task`` (1 hour: far longer than a
    rolling deploy, or a paused one, takes; short enough that jobs of a task no deployed
    app has any more are dead-lettered, and seen, the same working session instead of
    being handed back for days).
    Raises ``ConfigurationError`` naming the bad setting.
    """

    queues: list[str] = field(default_factory=lambda: ["default"])
    concurrency: int = 10
    lease: float = 30.0
    poll_interval: float = 2.0
    shutdown_timeout: float = 30.0
    listen: bool = True
    maintenance_interval: float = 1.0
    claim_batch: int | None = None
    prefetch: int = 0
    fast_claims: bool = False
    retention: Retention = field(default_factory=Retention)
    prune_interval: float = 10.0
    unknown_task_timeout: float = 3600.0
    heartbeat: str = "process"
    """Where leases are renewed: ``process`` (default), a small sidecar process per worker
    that no handler can starve (one holding the GIL in a C call, blocking its loop, using
    every CPU), which stops renewing when the worker is stopped (SIGSTOP) or dead; or
    ``thread``, a thread of the worker (one process fewer; a handler that holds the GIL
    for longer than the lease then loses its job to another worker)."""
    metrics_port: int | None = None
    """Serve Prometheus metrics on this port (``/metrics``; 0: any free port, see
    ``worker.metrics.port``); needs ``pgqueue[metrics]``. None: no server."""
    metrics_host: str = "0.0.0.0"
    burst: bool = False
    """Run what is due, then stop: once nothing is running or buffered and no job of
    the worker's queues is due (scheduled ones and retries with a backoff are left for
    later), the worker stops as after a SIGTERM (``pgqueue work --burst``)."""
    periodic: bool = True
    """Enqueue the app's periodic tasks' jobs as they fall due (off for ``app.drain()``,
    which runs only what is already there)."""

    def __post_init__(self) -> None:
        if not self.queues:
            raise ConfigurationError("a worker needs at least one queue (--queue NAME)")
        for q in self.queues:
            try:
                check_queue(q)
            except InvalidJobError as exc:
                raise ConfigurationError(str(exc)) from None
        self.queues = list(dict.fromkeys(self.queues))
        checks = {
            "concurrency": (self.concurrency, 1, 10_000),
            "lease": (self.lease, 1.0, 86_400.0),
            "poll_interval": (self.poll_interval, 0.01, 3_600.0),
            "shutdown_timeout": (self.shutdown_timeout, 0.0, 86_400.0),
            "maintenance_interval": (self.maintenance_interval, 0.05, 3_600.0),
            "unknown_task_timeout": (self.unknown_task_timeout, 0.5, 30 * 86_400.0),
        }
        for name, (value, low, high) in checks.items():
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not low <= value <= high
            ):
                raise ConfigurationError(f"{name} must be between {low} and {high}, got {value!r}")
        for state in ("succeeded", "failed", "cancelled"):
            keep = getattr(self.retention, state)
            if isinstance(keep, bool) or not isinstance(keep, (int, float)) or keep < 0:
                raise ConfigurationError(f"retention for {state} jobs must be >= 0 seconds")
        if not 0.1 <= self.prune_interval <= 86_400:
            raise ConfigurationError("prune_interval must be between 0.1 and 86400 seconds")
        if isinstance(self.prefetch, bool) or not 0 <= self.prefetch <= 100_000:
            raise ConfigurationError("prefetch must be between 0 and 100000")
        if self.heartbeat not in ("process", "thread"):
            raise ConfigurationError(
                f"heartbeat must be 'process' or 'thread', got {self.heartbeat!r}"
            )
        if self.metrics_port is not None and (
            isinstance(self.metrics_port, bool) or not 0 <= self.metrics_port <= 65_535
        ):
            raise ConfigurationError("metrics_port must be between 0 and 65535")
        if self.claim_batch is not None and not 1 <= self.claim_batch <= 10_000:
            raise ConfigurationError("claim_batch must be between 1 and 10000")
