"""``pgqueue status``."""

from __future__ import annotations

import click

from .common import Settings, emit_json, table


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def status(settings: Settings, as_json: bool) -> None:
    """Show jobs per queue and state, with the age of the oldest (the queue_stats view).

    'scheduled' is a queued job whose run_at has not come yet.

    \b
    Examples:
      pgqueue status
      pgqueue status --json | jq '.[] | select(.state == "failed")'
      psql -c 'SELECT * FROM pgqueue.queue_stats'      # the same, in SQL
    """
    app = settings.app()
    with app.pool().connection() as conn:
        app._check_schema_sync(conn)
        rows = conn.execute(app.query("queue_stats_list")).fetchall()
    data = [
        {"queue": q, "state": s, "jobs": int(n), "oldest_age_seconds": float(age)}
        for q, s, n, age in rows
    ]
    if as_json:
        emit_json(data)
        return
    if not data:
        click.echo("no jobs yet (enqueue one: pgqueue enqueue TASK)")
        return
    click.echo(
        table(
            ["QUEUE", "STATE", "JOBS", "OLDEST"],
            [[d["queue"], d["state"], d["jobs"], _age(d["oldest_age_seconds"])] for d in data],
        )
    )


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"
