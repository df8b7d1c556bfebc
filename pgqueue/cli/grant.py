"""``pgqueue grant KIND ROLE``: give an existing role what one kind of user needs."""

from __future__ import annotations

import click

from .. import roles
from ..db import connect
from .common import Settings


@click.command()
@click.argument("kind", metavar="KIND")
@click.argument("role", metavar="ROLE")
@click.option(
    "--sql", "print_sql", is_flag=True, help="Print the GRANT statements for a DBA instead."
)
@click.pass_obj
def grant(settings: Settings, kind: str, role: str, print_sql: bool) -> None:
    """Grant ROLE what KIND needs in the schema: producer, worker, operator or reader.

    \b
      producer  enqueue (Python, CLI, SQL), unique jobs, after=; read jobs and results
      worker    pgqueue work: claim, complete, heartbeats, maintenance; and producer
      operator  reader + retry, cancel, pause/resume, limits, prune (SQL functions)
      reader    status, jobs list/show, workers, the views; changes nothing

    Run it as the schema's owner (the role that ran `pgqueue migrate`) or a superuser.
    The role must exist. Safe to run again; kinds add up (grant worker and operator to
    one role if it does both). Nothing is revoked: to take a kind away, REVOKE by hand.
    See the README, "Database roles".

    \b
    Examples:
      pgqueue grant producer web_app
      pgqueue grant worker jobs_worker
      pgqueue --schema billing_jobs grant reader metabase
      pgqueue grant operator oncall --sql > grant.sql   # review, then: psql -f grant.sql
    """
    roles.check_kind(kind)
    roles.check_role_name(role)
    app = settings.app()
    if print_sql:
        click.echo(roles.script(app.schema, kind, role), nl=False)
        return
    with connect(app.dsn) as conn:
        count = roles.grant(conn, app.schema, kind, role)
    click.echo(f"granted {kind} to role {role!r} in schema {app.schema!r} ({count} statements)")
