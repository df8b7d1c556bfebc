"""``pgqueue work --processes N``: run N worker processes and restart one that dies.

SIGTERM/SIGINT are passed on to every child (each shuts down gracefully); a second
SIGINT is passed on too, which makes the children stop at once. SIGHUP (the terminal
went away) is passed on as SIGTERM. The children run in their own session: a terminal's
Ctrl-C goes to the whole foreground process group, and would otherwise reach each child
twice (directly and forwarded), which a child takes for "stop now". A child that exits
non-zero is restarted after a short backoff; one that keeps dying within a second of
starting is restarted at most every 5 seconds.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..metrics.relay import Relay

log = logging.getLogger("pgqueue.supervisor")


def supervise(processes: int, child_argv: list[str], relay: Relay | None = None) -> int:
    """Run ``processes`` children of ``python -m pgqueue.cli <child_argv>``; return exit code.

    ``relay`` (``--metrics-port``): each child gets the file to write its metrics port
    to, and the relay serves them all (``pgqueue.metrics.relay``)."""
    cmd = [sys.executable, "-m", "pgqueue.cli", *child_argv]
    children: dict[int, tuple[subprocess.Popen[bytes], float]] = {}
    stopping = {"signals": 0}

    def spawn(slot: int) -> None:
        env = None
        if relay is not None:
            relay.forget(slot)
            env = {**os.environ, **relay.env(slot)}
        children[slot] = (
            subprocess.Popen(cmd, start_new_session=True, preexec_fn=_die_with_parent, env=env),
            time.monotonic(),
        )
        log.info("worker process %d started (pid %d)", slot, children[slot][0].pid)

    def forward(signum: int, _frame: FrameType | None) -> None:
        stopping["signals"] += 1
        sig = signal.SIGTERM if signum == signal.SIGHUP else signum
        for proc, _ in children.values():
            if proc.poll() is None:
                proc.send_signal(sig)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    for slot in range(processes):
        spawn(slot)
    restart_at: dict[int, float] = {}
    while True:
        alive = 0
        for slot, (proc, started) in list(children.items()):
            code = proc.poll()
            if code is None:
                alive += 1
                continue
            if stopping["signals"]:
                continue
            if slot not in restart_at:
                delay = 5.0 if time.monotonic() - started < 1.0 else 0.5
                log.warning(
                    "worker process %d (pid %d) exited with %s; restarting in %.1fs",
                    slot,
                    proc.pid,
                    code,
                    delay,
                )
                restart_at[slot] = time.monotonic() + delay
            if time.monotonic() >= restart_at[slot]:
                del restart_at[slot]
                spawn(slot)
                alive += 1
        if stopping["signals"] and alive == 0:
            codes = [proc.returncode for proc, _ in children.values()]
            return 0 if all(c in (0, -signal.SIGTERM, -signal.SIGINT) for c in codes) else 1
        time.sleep(0.1)


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM if the supervisor dies (even by SIGKILL),
    so no orphaned worker keeps running. Linux only; elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
