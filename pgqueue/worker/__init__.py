"""The worker: claim loop, job runner, heartbeat, completer, supervisor."""

from .config import WorkerConfig
from .context import JobContext
from .loop import Worker

__all__ = ["JobContext", "Worker", "WorkerConfig"]
