"""``pgqueue demo``: a few hundred sample jobs worked end to end, with live progress.

Some jobs fail once and are retried, one always fails and ends dead-lettered in
``failed``. Runs in its own schema (``pgqueue_demo`` unless ``--schema`` is given),
which it migrates and empties first, so it never touches real jobs.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from typing import Any

import click

from .app import App
from .tasks import RetryPolicy
from .worker import Worker, WorkerConfig

FAST_RETRY = RetryPolicy(base=0.2, factor=2.0, max_delay=1.0)


def build_app(dsn: str | None, schema: str) -> App:
    """The demo's app and its three tasks."""
    app = App(dsn, schema=schema)

    @app.task(name="demo.resize_image", queue="images")
    async def resize_image(image_id: int, width: int) -> dict[str, Any]:
        await asyncio.sleep(random.uniform(0.005, 0.03))
        return {"image_id": image_id, "width": width}

    @app.task(
        name="demo.send_email", queue="emails", max_attempts=3, retry=FAST_RETRY, pass_context=True
    )
    def send_email(ctx: Any, to: str) -> str:
        time.sleep(random.uniform(0.002, 0.01))
        if ctx.attempt == 1 and hash(to) % 10 == 0:
            raise ConnectionError(f"SMTP server said 421 for {to} (try again later)")
        return f"sent to {to}"

    @app.task(name="demo.charge_card", queue="payments", max_attempts=3, retry=FAST_RETRY)
    def charge_card(order_id: int, cents: int) -> None:
        raise RuntimeError(f"card declined for order {order_id} ({cents} cents)")

    return app


def _counts(app: App) -> dict[str, int]:
    with app.pool().connection() as conn:
        rows = conn.execute(
            f'SELECT state, count(*) FROM "{app.schema}".all_jobs GROUP BY state'
        ).fetchall()
    return {str(s): int(n) for s, n in rows}


def run_demo(dsn: str | None, schema: str, jobs: int = 300) -> None:
    """Migrate, enqueue, work until everything is finished, print what happened.

    Raises ``PgQueueError`` if the database cannot be used.
    """
    from . import logs
    from .migrate import upgrade

    logs.configure("error")  # retries are expected here; the summary tells the story
    app = build_app(dsn, schema)
    echo = click.echo
    echo(f"pgqueue demo: schema {schema!r}")
    upgrade(app.dsn, schema)
    with app.pool().connection() as conn:
        conn.execute(f'DELETE FROM "{schema}".jobs')
        conn.execute(f'DELETE FROM "{schema}".succeeded_jobs')
    images = jobs * 2 // 3
    emails = jobs - images - 1
    specs = [app.tasks["demo.resize_image"].spec(i, 640) for i in range(images)]
    specs += [app.tasks["demo.send_email"].spec(to=f"user{i}@example.com") for i in range(emails)]
    specs.append(app.tasks["demo.charge_card"].spec(4711, 1999))
    t0 = time.monotonic()
    app.enqueue_many(specs)
    echo(
        f"enqueued {len(specs)} jobs in one statement ({time.monotonic() - t0:.3f}s): "
        f"{images} image resizes, {emails} e-mails (some fail once), 1 card charge (always fails)"
    )
    worker = Worker(
        app,
        WorkerConfig(
            queues=["images", "emails", "payments"],
            concurrency=20,
            poll_interval=0.2,
            maintenance_interval=0.5,
        ),
    )
    started = time.monotonic()
    asyncio.run(_work(app, worker, len(specs)))
    elapsed = time.monotonic() - started
    _summary(app, elapsed)
    app.close()


async def _work(app: App, worker: Worker, total: int) -> None:
    runner = asyncio.create_task(worker.run())
    tty = sys.stdout.isatty()
    last_print = 0.0
    try:
        while True:
            await asyncio.sleep(0.1)
            if runner.done():
                runner.result()  # re-raise a start-up error
                return
            counts = await asyncio.to_thread(_counts, app)
            finished = counts.get("succeeded", 0) + counts.get("failed", 0)
            line = (
                f"  {finished}/{total} finished | running {counts.get('running', 0)} | "
                f"queued {counts.get('queued', 0)} | succeeded {counts.get('succeeded', 0)} | "
                f"failed {counts.get('failed', 0)}"
            )
            now = time.monotonic()
            if tty:
                click.echo("\r" + line.ljust(90), nl=False)
            elif now - last_print > 1.0 or finished == total:
                click.echo(line)
                last_print = now
            if finished == total:
                if tty:
                    click.echo("")
                return
    finally:
        worker.request_stop(immediate=True)
        await asyncio.gather(runner, return_exceptions=True)


def _summary(app: App, elapsed: float) -> None:
    s = f'"{app.schema}"'
    with app.pool().connection() as conn:
        by_task = conn.execute(
            f"SELECT task, state, count(*), sum(attempt), max(attempt) FROM {s}.all_jobs "
            "GROUP BY task, state ORDER BY task, state"
        ).fetchall()
        dead = conn.execute(
            f"SELECT id, task, attempt, errors -> -1 ->> 'message' FROM {s}.jobs "
            "WHERE state = 'failed' ORDER BY id LIMIT 3"
        ).fetchall()
        total = conn.execute(f"SELECT count(*) FROM {s}.all_jobs").fetchone()
    n = int(total[0]) if total else 0
    click.echo(
        f"\nworked {n} jobs in {elapsed:.2f}s "
        f"({n / elapsed:.0f} jobs/s, including the retries' backoff)"
    )
    click.echo(f"{'task':<20} {'state':<10} {'jobs':>5} {'attempts':>9}")
    for task, state, count, attempts, _ in by_task:
        click.echo(f"{task:<20} {state:<10} {count:>5} {attempts:>9}")
    for job_id, task, attempt, message in dead:
        click.echo(f"dead letter: job {job_id} ({task}) failed after {attempt} attempts: {message}")
    click.echo(f"""
Look inside with plain SQL, e.g. psql "{app.dsn}":
  SELECT * FROM {s}.queue_stats;
  SELECT id, task, attempt, errors -> -1 ->> 'message' AS last_error
    FROM {s}.jobs WHERE state = 'failed';
  SELECT task, avg(finished_at - started_at) FROM {s}.all_jobs GROUP BY task;
or with the CLI:
  pgqueue --schema {app.schema} status""")
