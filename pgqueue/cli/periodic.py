"""``pgqueue periodic``: the periodic schedules, their last and next tick."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click

from ..periodic import status
from .common import Settings, emit_json, fitted_table


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def periodic(settings: Settings, as_json: bool) -> None:
    """Show the periodic schedules (@app.periodic) that workers registered.

    For each: its name, schedule, the last tick that got its job (or was skipped as
    missed) and the next tick, in UTC. A schedule removed from the code keeps its row;
    drop it with SQL: DELETE FROM pgqueue.periodic WHERE name = '...'. With --app, --json
    also names each schedule's task and catch-up policy (null: not in this app).

    \b
    Examples:
      pgqueue periodic
      pgqueue --app myproject.jobs:app periodic --json
      psql -c 'SELECT * FROM pgqueue.periodic'      # the same rows, in SQL
    """
    rows = status(settings.app())
    if as_json:
        emit_json(rows)
    elif not rows:
        click.echo("no periodic schedules (declare one with @app.periodic; a worker registers it)")
    else:
        click.echo(render(rows))


def _utc(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S") + (
        f".{moment.microsecond // 1000:03d}" if moment.microsecond else ""
    )


def render(rows: list[dict[str, Any]]) -> str:
    """The schedules table; fits 80 columns (long names and schedules are cut with '…')."""
    headers = ["NAME", "SCHEDULE", "LAST TICK (UTC)", "NEXT TICK (UTC)"]
    table_rows = [
        [r["name"], r["schedule"], _utc(r["last_tick"]), _utc(r["next_tick"])] for r in rows
    ]
    return fitted_table(headers, table_rows, shrink={0: 12, 1: 12})
