"""``pgqueue prune``: delete finished jobs older than a duration (over ``app.admin``)."""

from __future__ import annotations

import re

import click

from ..admin import FINISHED
from .common import Settings, emit_json

UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw]?)$")
#: Longer than any retention anyone means (and than PostgreSQL's intervals comfortably hold).
MAX_SECONDS = 100 * 365 * 86400
FORMAT = "a number and a unit s, m, h, d or w (30s, 15m, 12h, 7d, 2w), or plain seconds"


def parse_duration(text: str, option: str = "--older-than") -> float:
    """'30s', '15m', '12h', '7d', '2w' or plain seconds ('3600', '1.5') -> seconds.

    Raises ``click.ClickException`` (one line, exit 1) naming the option and the format.
    """
    match = _DURATION.match(text.strip().lower())
    if not match:
        raise click.ClickException(f"bad duration {text!r} for {option}: use {FORMAT}")
    seconds = float(match.group(1)) * UNITS[match.group(2)]
    if seconds > MAX_SECONDS:
        raise click.ClickException(
            f"duration {text!r} for {option} is too long (at most 100 years)"
        )
    return seconds


@click.command()
@click.option(
    "--older-than",
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
def prune(settings: Settings, older_than: str, states: tuple[str, ...], as_json: bool) -> None:
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
    seconds = parse_duration(older_than)
    chosen = list(dict.fromkeys(states)) or list(FINISHED)
    count = settings.app().admin.prune(seconds, chosen)
    if as_json:
        emit_json({"pruned": count, "older_than_seconds": seconds, "states": chosen})
    else:
        click.echo(
            f"pruned {count} job{'' if count == 1 else 's'} ({', '.join(chosen)}) "
            f"finished more than {older_than.strip()} ago"
        )
