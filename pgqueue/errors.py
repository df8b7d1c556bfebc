"""The exception tree. Everything pgqueue raises on purpose is a ``PgQueueError``.

```
PgQueueError
 +-- ConfigurationError        bad DSN, schema name, app path, settings; says what to fix
 |    +-- SchemaNotMigrated    the schema is missing or older than this pgqueue
 +-- InvalidJobError (ValueError)  bad task/queue name, arguments that are not JSON
 |    +-- UnknownTaskError     a task name the app never registered
 +-- JobNotFound (LookupError)  no job with that id
 +-- UnknownQueueError (LookupError)  no job or pause record names that queue
 +-- LeaseLost                 a fenced write changed nothing: another worker owns the job now
 +-- JobTimeout                a handler ran past its task's timeout
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


class JobNotFound(PgQueueError, LookupError):
    """No job has that id (it never existed, or was pruned)."""


class UnknownQueueError(PgQueueError, LookupError):
    """No job and no pause record names that queue."""
