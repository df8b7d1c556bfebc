"""The jobs a worker holds, and each change passed on to the heartbeat sidecar."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

Sink = Callable[[bytes, Iterable[tuple[int, int]]], None]


class Held:
    """The jobs a worker holds: job id -> attempt (the fencing token). Thread-safe.

    Each change is passed to the heartbeat (``attach``) under the same lock, so the
    sidecar sees them in the order they happened."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[int, int] = {}
        self._sink: Sink | None = None

    def attach(self, sink: Sink | None) -> None:
        """Send every change to ``sink`` from now on, starting with all jobs held now."""
        with self._lock:
            self._sink = sink
            if sink is not None and self._jobs:
                sink(b"a", self._jobs.items())

    def add_many(self, jobs: list[tuple[int, int]]) -> None:
        """Hold these (id, attempt) pairs, under one lock (a claim's batch)."""
        with self._lock:
            self._jobs.update(jobs)
            if self._sink is not None and jobs:
                self._sink(b"a", jobs)

    def discard_many(self, jobs: list[tuple[int, int]]) -> None:
        """``discard(id, attempt)`` for many pairs under one lock (a completion's batch)."""
        with self._lock:
            get, pop = self._jobs.get, self._jobs.pop
            gone = []
            for job_id, attempt in jobs:
                if get(job_id) == attempt:
                    pop(job_id, None)
                    gone.append((job_id, attempt))
            if self._sink is not None and gone:
                self._sink(b"d", gone)

    def discard(self, job_id: int, attempt: int | None = None) -> None:
        """Forget a job; with ``attempt``, only if that is the attempt held (a newer claim
        of the same job by this worker stays held)."""
        with self._lock:
            held = self._jobs.get(job_id)
            if held is not None and (attempt is None or held == attempt):
                del self._jobs[job_id]
                if self._sink is not None:
                    self._sink(b"d", ((job_id, held),))

    def get(self, job_id: int) -> int | None:
        with self._lock:
            return self._jobs.get(job_id)

    def snapshot(self) -> dict[int, int]:
        with self._lock:
            return dict(self._jobs)

    def __len__(self) -> int:
        with self._lock:
            return len(self._jobs)
