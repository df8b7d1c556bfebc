"""Helpers shared by the Python peer drivers (stdlib only: each runs in its peer's venv).

A driver is called as ``python <peer>_bench.py WORKLOAD JOBS DSN [options]`` and prints
one JSON line on stdout: ``{"jobs_per_s": ...}`` for W1-W3, ``{"p50_ms": ..., "p99_ms":
...}`` for W4, ``{"version": ...}`` for ``version``. Anything else goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path


class BenchError(Exception):
    """A workload could not finish; the message ends up in the comparison table."""


def emit(figures: dict) -> None:
    sys.stdout.write(json.dumps(figures) + "\n")
    sys.stdout.flush()


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def pct(sorted_values: list[float], p: float) -> float:
    """Linear-interpolated percentile, the same formula as ``pgqueue bench``."""
    k = (len(sorted_values) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def wait_until(
    check: Callable[[], bool],
    timeout: float,
    what: str,
    every: float = 0.02,
    progress: Callable[[], object] | None = None,
    stall: float = 90.0,
) -> None:
    """Poll ``check`` until true; fail after ``timeout``, or after ``stall`` seconds in
    which ``progress()`` (say, jobs finished so far) did not change."""
    deadline = time.monotonic() + timeout
    last, moved = None, time.monotonic()
    while not check():
        now = time.monotonic()
        if now > deadline:
            raise BenchError(f"{what} not reached within {timeout:.0f}s")
        if progress is not None:
            seen = progress()
            if seen != last:
                last, moved = seen, now
            elif now - moved > stall:
                raise BenchError(f"{what}: no progress for {stall:.0f}s (at {seen})")
        time.sleep(every)


def drain_timeout(jobs: int) -> float:
    """A drain's limit: what compare.py gives the driver (less a margin), else generous."""
    given = os.environ.get("BENCH_DRAIN_TIMEOUT")
    return float(given) if given else max(120.0, jobs / 25)


class Worker:
    """A worker child process; stopped with SIGTERM (then SIGKILL) on exit."""

    def __init__(self, cmd: list[str], env: dict[str, str] | None = None):
        # The worker's stdout goes to our stderr: our stdout carries the one JSON line.
        self.proc = subprocess.Popen(
            cmd,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            stdout=sys.stderr,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def check(self) -> None:
        if self.proc.poll() is not None and self.proc.returncode != 0:
            raise BenchError(f"the worker process exited with {self.proc.returncode}")

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self, timeout: float = 15) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Stamps:
    """Handler start times, one ``i time`` line per job, appended by the worker.

    Small appends with O_APPEND are atomic, so several worker processes or threads can
    share the file.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.write_text("")

    @staticmethod
    def record(path: str, i: int) -> None:
        """Called in the handler, first thing."""
        t = time.time()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{i} {t!r}\n".encode())
        finally:
            os.close(fd)

    def read(self) -> dict[int, float]:
        out: dict[int, float] = {}
        for line in self.path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2:
                out[int(parts[0])] = float(parts[1])
        return out


def latency_figures(sent: dict[int, float], started: dict[int, float], jobs: int) -> dict:
    lat = sorted((started[i] - sent[i]) * 1000 for i in sent if i in started)
    if len(lat) != jobs:
        raise BenchError(f"{len(lat)} of {jobs} latency jobs ran")
    return {"p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99)}


def stamps_path(tag: str) -> str:
    d = Path(os.environ.get("BENCH_TMP", "/tmp"))
    d.mkdir(parents=True, exist_ok=True)
    return str(d / f"{tag}-{os.getpid()}.stamps")


def driver_parser(target: str = "dsn") -> argparse.ArgumentParser:
    """The arguments every driver takes: WORKLOAD JOBS and where the jobs live."""
    p = argparse.ArgumentParser()
    p.add_argument("workload")
    p.add_argument("jobs", type=int)
    p.add_argument(target)
    return p


def emit_versions(**names: str) -> None:
    """Print the installed versions: ``emit_versions(version="celery", kombu="kombu")``."""
    from importlib.metadata import version

    emit({key: version(package) for key, package in names.items()})


def run_driver(main: Callable[[], None]) -> None:
    """Run a driver's main; a BenchError becomes one stderr line and exit code 2."""
    try:
        main()
    except BenchError as e:
        print(f"BenchError: {e}", file=sys.stderr)
        sys.exit(2)
