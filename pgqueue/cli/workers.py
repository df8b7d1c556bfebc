"""``pgqueue workers``: the live workers (a thin layer over ``app.admin``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click

from .common import Settings, emit_json, fitted_table, seconds_since
from .status import age


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def workers(settings: Settings, as_json: bool) -> None:
    """Show the workers and their heartbeats.

    For each: its id (host:pid:tag), queues, jobs running out of its concurrency, time
    since its last heartbeat, and uptime. A worker that died shows an ever older
    heartbeat until maintenance removes its row.

    \b
    Examples:
      pgqueue workers
      pgqueue workers --json | jq '.[] | select(.heartbeat_age_seconds > 30)'
    """
    rows = settings.app().admin.workers()
    if as_json:
        emit_json(rows)
    elif not rows:
        click.echo("no workers (start one: pgqueue --app myproject.jobs:app work)")
    else:
        click.echo(render(rows))


def render(rows: list[dict[str, Any]], now: datetime | None = None) -> str:
    """The workers table; fits 80 columns (long ids and queue lists are cut with '…')."""
    now = now or datetime.now(UTC)
    headers = ["WORKER", "QUEUES", "RUNNING", "HEARTBEAT", "UP"]
    table_rows = [
        [
            r["id"],
            ",".join(r["queues"]),
            f"{r['running']}/{r['concurrency']}",
            age(float(r["heartbeat_age_seconds"])) + " ago",
            age(seconds_since(r["started_at"], now)),
        ]
        for r in rows
    ]
    return fitted_table(headers, table_rows, shrink={0: 16, 1: 10})
