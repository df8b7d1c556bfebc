"""``pgqueue migrate``."""

from __future__ import annotations

import click

from .. import migrate as _migrate
from .common import Settings


@click.command()
@click.option(
    "--sql", "print_sql", is_flag=True, help="Print the DDL for a DBA instead of running it."
)
@click.pass_obj
def migrate(settings: Settings, print_sql: bool) -> None:
    """Create or upgrade pgqueue's schema to this version's revision.

    Safe to run again (nothing to do) and from several processes at once (they
    take turns on an advisory lock). Everything runs in one transaction. Refuses a
    schema holding objects pgqueue did not create (choose another --schema).

    \b
    Examples:
      pgqueue migrate
      pgqueue --schema billing_jobs migrate
      pgqueue migrate --sql > pgqueue.sql     # review, then: psql -f pgqueue.sql
    """
    app = settings.app()
    if print_sql:
        click.echo(_migrate.upgrade_sql(app.schema), nl=False)
        return
    before, after = _migrate.upgrade(app.dsn, app.schema, notify=click.echo)
    if before == after:
        click.echo(f"schema {app.schema!r} is up to date (revision {after})")
    else:
        click.echo(f"schema {app.schema!r} migrated: {before or 'empty'} -> {after}")
