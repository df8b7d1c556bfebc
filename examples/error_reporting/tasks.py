"""The example's app: a task that fails, and hooks that report failures the way an
error reporter (Sentry, Rollbar, ...) would. A worker imports it with --app tasks:app."""

from __future__ import annotations

from pgqueue import App, RetryPolicy
from pgqueue.hooks import Failure

app = App()  # PGQUEUE_DSN / PGQUEUE_SCHEMA, else the embedded server


def capture_exception(exc: BaseException | None, **context: object) -> None:
    """Stands for sentry_sdk.capture_exception: here it prints what it would send."""
    print(f"reported: {type(exc).__name__}: {exc} {context}", flush=True)


@app.on_failure
def attempt_failed(failure: Failure) -> None:
    if failure.retrying:  # runs again after its backoff: worth a log line, not a page
        print(f"attempt {failure.job.attempt} of job {failure.job.id} failed; retrying",
              flush=True)  # fmt: skip


@app.on_dead_letter
def dead_letter(failure: Failure) -> None:
    # Called once, when the job fails for good, in the worker's hooks thread.
    capture_exception(failure.exception, task=failure.job.task, job_id=failure.job.id,
                      attempts=failure.job.attempt)  # fmt: skip


@app.task(queue="payments", max_attempts=2, retry=RetryPolicy(base=0.2, jitter=0))
def charge(order_id: int) -> None:
    raise ValueError(f"card declined for order {order_id}")
