"""pgqueue: a durable job queue inside the PostgreSQL your application already runs.

The public names, re-exported; nothing is defined here.
"""

from .admin import Admin
from .app import App
from .errors import (
    ConfigurationError,
    InvalidJobError,
    JobNotFound,
    JobTimeout,
    LeaseLost,
    PgQueueError,
    SchemaNotMigrated,
    UnknownQueueError,
    UnknownTaskError,
)
from .jobspec import JobSpec
from .tasks import RetryPolicy, Task

__all__ = [
    "Admin",
    "App",
    "ConfigurationError",
    "InvalidJobError",
    "JobNotFound",
    "JobSpec",
    "JobTimeout",
    "LeaseLost",
    "PgQueueError",
    "RetryPolicy",
    "SchemaNotMigrated",
    "Task",
    "UnknownQueueError",
    "UnknownTaskError",
]
