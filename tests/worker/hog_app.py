"""tests.worker.sample_app plus handlers that starve every thread of their worker, for
test_unstarvable_lease.py (each holds the GIL in one long C call, so no other thread of
the process gets a turn, or blocks the event loop), and a long job that resumes from its
checkpoints, for tests/crash/test_checkpoint_resume.py."""

from __future__ import annotations

import ctypes
import re
import time
from typing import Any

from pgqueue.worker import JobContext
from tests.worker.sample_app import FAST_RETRY, _record, app

__all__ = ["app"]


def _hold_gil(how: str, size: int) -> None:
    if how == "regex":  # catastrophic backtracking inside the re module's C matcher
        re.match(r"(a+)+$", "a" * size + "b")
    elif how == "c_loop":  # a busy loop in C: sum() over a range never leaves C
        sum(range(size))
    elif how == "c_sleep":  # a foreign C call through PyDLL, which keeps the GIL
        ctypes.PyDLL(None).sleep(size)
    else:
        raise ValueError(how)


@app.task(name="hog", pass_context=True, retry=FAST_RETRY)
def hog(ctx: JobContext, how: str, size: int) -> dict[str, Any]:
    """Record 'start', hold the GIL in one C call, record 'end'."""
    _record(ctx, "start")
    _hold_gil(how, size)
    return _record(ctx, "end")


@app.task(name="hog_async", pass_context=True, retry=FAST_RETRY)
async def hog_async(ctx: JobContext, seconds: float) -> dict[str, Any]:
    """Record 'start', block the event loop (time.sleep in async def), record 'end'."""
    _record(ctx, "start")
    time.sleep(seconds)
    return _record(ctx, "end")


@app.task(name="steps", pass_context=True, retry=FAST_RETRY)
def steps(ctx: JobContext, n: int, pause_after: int) -> dict[str, Any]:
    """A long job of ``n`` steps that resumes from its checkpoint: each step records
    'step K', then checkpoints {"next": K + 1}. The first attempt pauses after step
    ``pause_after`` (a test kills the worker there)."""
    start = (ctx.checkpoint_state or {"next": 1})["next"]
    for step in range(start, n + 1):
        _record(ctx, f"step {step}")
        ctx.checkpoint({"next": step + 1})
        ctx.progress(step, n)
        if step == pause_after and ctx.attempt == 1:
            time.sleep(120)
    return {"resumed_at": start}
