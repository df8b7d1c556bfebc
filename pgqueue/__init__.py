"""pgqueue: a durable job queue inside the PostgreSQL your application already runs.

The public names, re-exported; nothing is defined here.
"""

from typing import TYPE_CHECKING, Any

from .admin import Admin
from .app import App
from .codec import register_type
from .errors import (
    Cancel,
    ConfigurationError,
    DrainTimeout,
    InvalidJobError,
    JobCancelled,
    JobFailed,
    JobNotFound,
    JobTimeout,
    LeaseLost,
    PgQueueError,
    ResultTimeout,
    Retry,
    SchemaNotMigrated,
    Snooze,
    UnknownQueueError,
    UnknownTaskError,
)
from .jobspec import JobSpec
from .results import Job
from .tasks import RetryPolicy, Task

if TYPE_CHECKING:
    from .worker.context import JobContext


def __getattr__(name: str) -> Any:
    # JobContext lives with the worker; importing it here at once would load the whole
    # worker (40 ms) for every producer that never runs a job.
    if name == "JobContext":
        from .worker.context import JobContext

        return JobContext
    raise AttributeError(f"module 'pgqueue' has no attribute {name!r}")


__all__ = [
    "Admin",
    "App",
    "Cancel",
    "ConfigurationError",
    "DrainTimeout",
    "InvalidJobError",
    "Job",
    "JobCancelled",
    "JobContext",
    "JobFailed",
    "JobNotFound",
    "JobSpec",
    "JobTimeout",
    "LeaseLost",
    "PgQueueError",
    "ResultTimeout",
    "Retry",
    "RetryPolicy",
    "SchemaNotMigrated",
    "Snooze",
    "Task",
    "UnknownQueueError",
    "UnknownTaskError",
    "register_type",
]
