"""``pgqueue status``."""

from __future__ import annotations

import time
from typing import Any

import click

from .common import Settings, emit_json, table
from .durations import Duration


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.option("--watch", is_flag=True, help="Refresh every --interval until Ctrl-C.")
@click.option(
    "--interval",
    type=Duration(0.2, 3600),
    default="2s",
    show_default=True,
    metavar="DURATION",
    help="Time between refreshes with --watch (2s, 1m, or seconds).",
)
@click.pass_obj
def status(settings: Settings, as_json: bool, watch: bool, interval: float) -> None:
    """Show every queue: queued, scheduled, running and failed jobs, the age of the oldest
    due job, jobs finished in the last minute, and whether it is paused (the queue_stats
    view). WAIT, when there are such jobs: jobs waiting for the jobs they run after.
    Below it, when there are any: tasks no live worker of their queue knows (queued jobs
    nobody runs, jobs failed unknown_task), e.g. after a deploy that was rolled back.

    \b
    Examples:
      pgqueue status
      pgqueue status --watch
      pgqueue status --json | jq '.[] | select(.failed > 0)'
      psql -c 'SELECT * FROM pgqueue.queue_stats'      # the same, in SQL
    """
    app = settings.app()
    while True:
        data = [_plain(r) for r in app.admin.queues()]
        if as_json:
            emit_json(data)
        else:
            text = render(data) + render_unknown(app.admin.unknown_tasks())
            if watch:
                click.clear()
                click.echo(time.strftime("%H:%M:%S ") + f"schema {app.schema}  (Ctrl-C to stop)\n")
            click.echo(text)
        if not watch:
            return
        try:
            time.sleep(interval)
        except KeyboardInterrupt:
            return


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    age = row["oldest_queued_age_seconds"]
    return {**row, "oldest_queued_age_seconds": None if age is None else float(age)}


def render(data: list[dict[str, Any]]) -> str:
    """The status table (fits 80 columns). WAIT (jobs waiting for the jobs they run
    after) is shown only when some queue has such jobs, with queue names cut shorter."""
    if not data:
        return "no queues yet (enqueue a job: pgqueue enqueue TASK)"
    headers = ["QUEUE", "QUEUED", "SCHED", "RUNNING", "FAILED", "OLDEST", "DONE/MIN", "PAUSED"]
    waiting = any(d.get("waiting") for d in data)
    rows = [
        [
            d["queue"][: 16 if waiting else 24],
            d["queued"],
            d["scheduled"],
            d["running"],
            d["failed"],
            age(d["oldest_queued_age_seconds"]),
            d["finished_last_minute"],
            "yes" if d["paused"] else "",
        ]
        for d in data
    ]
    if waiting:
        headers.insert(3, "WAIT")
        for row, d in zip(rows, data, strict=True):
            row.insert(3, d["waiting"])
    return table(headers, rows)


def render_unknown(rows: list[dict[str, Any]]) -> str:
    """A table of tasks no live worker of their queue knows ('' when there are none)."""
    if not rows:
        return ""
    body = table(
        ["QUEUE", "TASK", "QUEUED", "FAILED", "UNKNOWN FOR"],
        [
            [
                r["queue"][:24],
                r["task"][:32],
                r["queued"],
                r["failed"],
                age(None if r["unknown_seconds"] is None else float(r["unknown_seconds"])),
            ]
            for r in rows
        ],
    )
    return (
        "\n\nunknown tasks: no live worker of the queue knows them (their jobs are handed "
        "back,\nthen failed unknown_task after --unknown-task-timeout):\n" + body
    )


def age(seconds: float | None) -> str:
    """A short human age: 12.3s, 4.5m, 2.0h, 3.1d; '-' for none."""
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"
