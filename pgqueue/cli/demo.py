"""``pgqueue demo``."""

from __future__ import annotations

import click

from .common import Settings


@click.command()
@click.option(
    "--jobs",
    type=click.IntRange(10, 100_000),
    default=300,
    show_default=True,
    help="How many sample jobs to enqueue.",
)
@click.pass_obj
def demo(settings: Settings, jobs: int) -> None:
    """Run a few hundred sample jobs end to end and show what happened.

    Some jobs fail once and are retried; one always fails and ends in the dead
    letter state. Uses the embedded PostgreSQL when no DSN is configured, and its
    own schema (pgqueue_demo unless --schema is given), which it migrates and
    empties first.

    \b
    Examples:
      pgqueue demo
      pgqueue --dsn postgresql://localhost/app demo --jobs 2000
    """
    from ..demo import run_demo

    run_demo(settings.dsn, settings.schema or "pgqueue_demo", jobs)
