"""``pgqueue prune``: delete finished jobs older than a duration (over ``app.admin``)."""

from __future__ import annotations

import click

from ..admin import FINISHED
from .common import Settings, emit_json
from .durations import Duration, Seconds


@click.command()
@click.option(
    "--older-than",
    type=Duration(),
    required=True,
    metavar="DURATION",
    help="Delete jobs that finished longer ago than this: 30s, 15m, 12h, 7d, 2w, or plain seconds.",
)
@click.option(
    "--state",
    "states",
    multiple=True,
    metavar="STATE",
    help="Only jobs in this finished state: succeeded, failed or cancelled (repeat for "
    "several). Default: all three.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def prune(settings: Settings, older_than: Seconds, states: tuple[str, ...], as_json: bool) -> None:
    """Delete finished jobs older than --older-than.

    Finished means succeeded, failed or cancelled; queued and running jobs are never
    touched. Workers also prune on
    their own (--keep-succeeded/--keep-failed); this is for a one-off clean-up.

    \b
    Examples:
      pgqueue prune --older-than 7d
      pgqueue prune --older-than 12h --state succeeded --state cancelled
      psql -c "SELECT pgqueue.prune_jobs(interval '7 days')"   # the same, in SQL
    """
    seconds = float(older_than)
    chosen = list(dict.fromkeys(states)) or list(FINISHED)
    count = settings.app().admin.prune(seconds, chosen)
    if as_json:
        emit_json({"pruned": count, "older_than_seconds": seconds, "states": chosen})
    else:
        click.echo(
            f"pruned {count} job{'' if count == 1 else 's'} ({', '.join(chosen)}) "
            f"finished more than {older_than.text} ago"
        )
