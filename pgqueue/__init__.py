"""pgqueue: a durable job queue inside the PostgreSQL your application already runs.

The public names, re-exported; nothing is defined here.
"""

from .admin import Admin
from .app import App
from .errors import (
    ConfigurationError,
    InvalidJobError,
    JobCancelled,
    JobFailed,
    JobNotFound,
    JobTimeout,
    LeaseLost,
    PgQueueError,
    ResultTimeout,
    SchemaNotMigrated,
    UnknownQueueError,
    UnknownTaskError,
)
from .jobspec import JobSpec
from .results import Job
from .tasks import RetryPolicy, Task

__all__ = [
    "Admin",
    "App",
    "ConfigurationError",
    "InvalidJobError",
    "Job",
    "JobCancelled",
    "JobFailed",
    "JobNotFound",
    "JobSpec",
    "JobTimeout",
    "LeaseLost",
    "PgQueueError",
    "ResultTimeout",
    "RetryPolicy",
    "SchemaNotMigrated",
    "Task",
    "UnknownQueueError",
    "UnknownTaskError",
]
