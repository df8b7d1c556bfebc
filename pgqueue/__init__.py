"""pgqueue: a durable job queue inside the PostgreSQL your application already runs.

The public names, re-exported; nothing is defined here.
"""

from .app import App
from .errors import (
    ConfigurationError,
    InvalidJobError,
    JobTimeout,
    LeaseLost,
    PgQueueError,
    SchemaNotMigrated,
    UnknownTaskError,
)
from .jobspec import JobSpec
from .tasks import RetryPolicy, Task

__all__ = [
    "App",
    "ConfigurationError",
    "InvalidJobError",
    "JobSpec",
    "JobTimeout",
    "LeaseLost",
    "PgQueueError",
    "RetryPolicy",
    "SchemaNotMigrated",
    "Task",
    "UnknownTaskError",
]
