"""``pgqueue queues``: list, pause, resume and limit queues (a thin layer over ``app.admin``)."""

from __future__ import annotations

from typing import Any

import click

from ..admin import describe_limits
from .common import Settings, emit_json
from .durations import Duration, Rate
from .status import _plain, render


@click.group()
def queues() -> None:
    """List queues, pause or resume claiming from one, and set its limits.

    A paused queue keeps accepting jobs; no worker claims from it until it is resumed.
    Limits (a cap on running jobs, per tenant too, a rate) hold over all workers.

    \b
    Examples:
      pgqueue queues list
      pgqueue queues pause emails
      pgqueue queues resume emails
      pgqueue queues set gpu --max-running 4
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


def _count(text: str | None, option: str) -> int | str | None:
    """A whole number, None for "none" (remove the limit), or "keep" (option not given)."""
    if text is None:
        return "keep"
    if text.strip().lower() == "none":
        return None
    if not text.strip().isdigit() or int(text) < 1:
        raise click.ClickException(f"bad {option} {text!r}: use a whole number >= 1, or none")
    return int(text)


@queues.command("set")
@click.argument("queue")
@click.option("--max-running", metavar="N|none", help="Jobs of QUEUE running at once, fleet-wide.")
@click.option(
    "--max-per-group", metavar="N|none", help="Running jobs per group key (tenant) of QUEUE."
)
@click.option(
    "--rate", type=Rate(), metavar="COUNT/PERIOD|none", help="Claims per period: 10/s, 100/1m."
)
@click.option(
    "--priority-aging",
    type=Duration(0, low_open=True, allow_none=True),
    metavar="DURATION|none",
    help="Every DURATION, due jobs waiting behind higher-priority ones move up one step.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def set_limits(
    settings: Settings,
    queue: str,
    max_running: str | None,
    max_per_group: str | None,
    rate: tuple[int | None, float | None] | None,
    priority_aging: float | str | None,
    as_json: bool,
) -> None:
    """Set QUEUE's limits, held exactly over all workers. Options not given keep their
    value; `none` removes a limit. Workers apply a change at their next claim.

    \b
    Examples:
      pgqueue queues set gpu --max-running 4
      pgqueue queues set emails --rate 100/1m
      pgqueue queues set reports --max-per-group 2     # per tenant (job group_key)
      pgqueue queues set default --priority-aging 30s
      pgqueue queues set gpu --max-running none        # remove the cap
      psql -c "SELECT pgqueue.set_queue_limits('gpu', max_running => 4)"  # SQL: sets all
    """
    changes: dict[str, Any] = {}
    for name, value in (
        ("max_running", _count(max_running, "--max-running")),
        ("max_running_per_group", _count(max_per_group, "--max-per-group")),
    ):
        if value != "keep":
            changes[name] = value
    if rate is not None:
        changes["rate_limit"], changes["rate_period"] = rate
    if priority_aging is not None:
        changes["priority_aging"] = None if priority_aging == "none" else priority_aging
    if not changes:
        raise click.ClickException(
            "nothing to set: give --max-running, --max-per-group, --rate or --priority-aging"
        )
    limits = settings.app().admin.set_limits(queue, **changes)
    if as_json:
        emit_json({"queue": queue, **limits})
    else:
        click.echo(f"queue {queue}: {describe_limits(limits)}")
