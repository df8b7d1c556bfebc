"""``pgqueue queues``: list, pause and resume queues (a thin layer over ``app.admin``)."""

from __future__ import annotations

import click

from .common import Settings, emit_json
from .status import _plain, render


@click.group()
def queues() -> None:
    """List queues, and pause or resume claiming from one.

    A paused queue keeps accepting jobs; no worker claims from it until it is resumed.

    \b
    Examples:
      pgqueue queues list
      pgqueue queues pause emails
      pgqueue queues resume emails
    """


@queues.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def list_queues(settings: Settings, as_json: bool) -> None:
    """List every queue with its counts (the same table as `pgqueue status`).

    \b
    Examples:
      pgqueue queues list
      pgqueue queues list --json | jq '.[] | select(.paused) | .queue'
    """
    data = [_plain(r) for r in settings.app().admin.queues()]
    if as_json:
        emit_json(data)
    else:
        click.echo(render(data))


@queues.command()
@click.argument("queue")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def pause(settings: Settings, queue: str, as_json: bool) -> None:
    """Stop workers claiming jobs from QUEUE. Jobs still go in; running jobs finish.
    A queue that has no jobs yet can be paused ahead of time.

    \b
    Examples:
      pgqueue queues pause emails
      psql -c "SELECT pgqueue.pause_queue('emails')"      # the same, in SQL
    """
    settings.app().admin.pause(queue)
    if as_json:
        emit_json({"queue": queue, "paused": True})
    else:
        click.echo(f"paused queue {queue}: jobs still go in, none is claimed until resumed")


@queues.command()
@click.argument("queue")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def resume(settings: Settings, queue: str, as_json: bool) -> None:
    """Let workers claim jobs from QUEUE again (they are woken at once).

    \b
    Examples:
      pgqueue queues resume emails
      psql -c "SELECT pgqueue.resume_queue('emails')"     # the same, in SQL
    """
    resumed = settings.app().admin.resume(queue)
    if as_json:
        emit_json({"queue": queue, "resumed": resumed})
    elif resumed:
        click.echo(f"resumed queue {queue}")
    else:
        click.echo(f"queue {queue} was not paused")
