"""The "new version" of tests.worker.sample_app for rolling-deploy tests: the same app and
tasks, plus ``new_task``, which workers running sample_app (the old version) do not know."""

from __future__ import annotations

from typing import Any

from pgqueue.worker import JobContext
from tests.worker.sample_app import FAST_RETRY, _record, app

__all__ = ["app"]


@app.task(name="new_task", pass_context=True, retry=FAST_RETRY)
def new_task(ctx: JobContext, n: int) -> dict[str, Any]:
    return {**_record(ctx, "new_task"), "n": n}
