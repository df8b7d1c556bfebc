"""``pgqueue dashboard``: the web dashboard (needs ``pip install 'pgqueue[dashboard]'``)."""

from __future__ import annotations

import logging

import click

from ..errors import ConfigurationError
from .common import Settings


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but 127.0.0.1/localhost exposes it to "
              "the network: set credentials (below).")  # fmt: skip
@click.option("--port", type=click.IntRange(0, 65535), default=8181, show_default=True)
@click.option("--actions", is_flag=True,
              help="Allow retry/cancel/delete, pause/resume and limits from the page. Needs "
              "credentials in the environment.")  # fmt: skip
@click.option("--title", default="pgqueue", show_default=True, help="The name in the header.")
@click.pass_obj
def dashboard(settings: Settings, host: str, port: int, actions: bool, title: str) -> None:
    """Serve the web dashboard: queues with live counts and charts, jobs with filters,
    dead letters grouped by error, workers, periodic schedules.

    \b
    Read-only unless --actions. Credentials come from the environment only:
      PGQUEUE_DASHBOARD_TOKEN=...                 a token (Bearer, or the login page)
      PGQUEUE_DASHBOARD_USER=... PGQUEUE_DASHBOARD_PASSWORD=...   basic auth / login
    With credentials set every page needs them; --actions refuses to start without.
    Actions are logged (logger pgqueue.dashboard) with who did them.

    \b
    Examples:
      pgqueue dashboard                              http://127.0.0.1:8181, read-only
      PGQUEUE_DASHBOARD_TOKEN=$(openssl rand -hex 16) pgqueue dashboard --actions
    """
    try:
        import uvicorn

        from ..dashboard import create_app
    except ImportError as exc:
        raise click.ClickException(
            f"the dashboard needs the dashboard extra ({exc.name} is missing): "
            "pip install 'pgqueue[dashboard]'"
        ) from None
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        web = create_app(settings.app(), actions=actions, title=title)
    except ConfigurationError as exc:
        raise click.UsageError(str(exc)) from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    mode = "actions on" if actions else "read-only"
    click.echo(f"pgqueue dashboard on http://{host}:{port}/ ({mode}); Ctrl-C stops it", err=True)
    uvicorn.run(web, host=host, port=port, log_level="warning", proxy_headers=False)
