"""The ``pgqueue`` group: global options, one-line errors, and the command list."""

from __future__ import annotations

from typing import Any

import click
import psycopg

from ..db import first_line
from ..errors import PgQueueError
from .common import Settings


class Group(click.Group):
    """Turns pgqueue's errors and database errors into one line and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PgQueueError as exc:
            raise click.ClickException(str(exc)) from None
        except psycopg.OperationalError as exc:
            raise click.ClickException(f"database unavailable: {first_line(exc)}") from None
        except psycopg.errors.InsufficientPrivilege as exc:
            raise click.ClickException(
                f"database error: {first_line(exc)} (the role lacks this right: a DBA can give "
                "it with `pgqueue grant KIND ROLE`, see the README's Database roles)"
            ) from None
        except psycopg.Error as exc:
            raise click.ClickException(f"database error: {first_line(exc)}") from None


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--dsn",
    envvar="PGQUEUE_DSN",
    metavar="DSN",
    help="PostgreSQL DSN (libpq string or URI). Default: $PGQUEUE_DSN, "
    "$DATABASE_URL, then the embedded server (pgqueue[embedded]).",
)
@click.option(
    "--schema",
    envvar="PGQUEUE_SCHEMA",
    metavar="NAME",
    help="Schema holding pgqueue's tables. Default: $PGQUEUE_SCHEMA or 'pgqueue'.",
)
@click.option(
    "--app",
    "app_path",
    envvar="PGQUEUE_APP",
    metavar="MODULE:ATTR",
    help="Your pgqueue.App, e.g. myproject.jobs:app (or $PGQUEUE_APP). "
    "Needed by `work`; lets `enqueue` check task names.",
)
@click.option(
    "--listen-dsn",
    envvar="PGQUEUE_LISTEN_DSN",
    metavar="DSN",
    help="A direct connection for LISTEN when --dsn goes through pgbouncer in transaction "
    "mode (or $PGQUEUE_LISTEN_DSN). Without one there, workers and result waits poll "
    "every 0.5 s.",
)
@click.version_option(package_name="pgqueue")
@click.pass_context
def cli(
    ctx: click.Context,
    dsn: str | None,
    schema: str | None,
    app_path: str | None,
    listen_dsn: str | None,
) -> None:
    """pgqueue: a durable job queue inside your PostgreSQL.

    \b
    Jobs are rows in the pgqueue schema; workers claim them with
    SELECT ... FOR UPDATE SKIP LOCKED and wake on LISTEN/NOTIFY.

    \b
    Start here:
      pgqueue demo                         a few hundred sample jobs, end to end
      pgqueue migrate                      create or upgrade the schema
      pgqueue enqueue tasks.add --args '[1, 2]'
      pgqueue status                       jobs per queue and state
    """
    ctx.obj = Settings(dsn=dsn, schema=schema, app_path=app_path, listen_dsn=listen_dsn)


def _register() -> None:
    from . import (
        bench,
        dashboard,
        demo,
        enqueue,
        grant,
        jobs,
        metrics,
        migrate,
        periodic,
        prune,
        queues,
        status,
        work,
        workers,
    )

    cli.add_command(migrate.migrate)
    cli.add_command(enqueue.enqueue)
    cli.add_command(status.status)
    cli.add_command(jobs.jobs)
    cli.add_command(queues.queues)
    cli.add_command(workers.workers)
    cli.add_command(periodic.periodic)
    cli.add_command(prune.prune)
    cli.add_command(grant.grant)
    cli.add_command(work.work)
    cli.add_command(demo.demo)
    cli.add_command(bench.bench)
    cli.add_command(dashboard.dashboard)
    cli.add_command(metrics.metrics)


_register()
