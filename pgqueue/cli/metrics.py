"""``pgqueue metrics serve``: the fleet exporter (see ``pgqueue.metrics.fleet``)."""

from __future__ import annotations

import signal
import threading

import click

from .. import logs
from .common import Settings
from .durations import Duration


@click.group()
def metrics() -> None:
    """Prometheus metrics of the whole queue (a worker's own: work --metrics-port).

    \b
    Examples:
      pgqueue metrics serve --port 9101
      pgqueue --app myproject.jobs:app work --metrics-port 9100   # one worker's
    """


@metrics.command()
@click.option(
    "--port", type=click.IntRange(0, 65_535), default=9101, show_default=True, metavar="PORT"
)
@click.option("--host", default="0.0.0.0", show_default=True, metavar="HOST")
@click.option(
    "--stale-after",
    type=Duration(1, 86_400),
    default="60s",
    show_default=True,
    metavar="DURATION",
    help="A worker counts as alive while its last heartbeat is younger than this.",
)
@click.pass_obj
def serve(settings: Settings, port: int, host: str, stale_after: float) -> None:
    """Serve /metrics for the whole queue, read from the database at each scrape:
    jobs per queue and state, the oldest due job's age, dead letters, workers alive.
    Needs pgqueue[metrics]; one exporter per database is enough. Stops on SIGTERM/Ctrl-C.

    \b
    Examples:
      pgqueue metrics serve --port 9101
      curl -s localhost:9101/metrics | grep pgqueue_queue_jobs
    """
    from ..metrics.fleet import serve_fleet

    logs.configure("info", "text")
    app = settings.app(strict_tasks=False)
    app._probe()  # a wrong DSN or an unmigrated schema fails here, not at the first scrape
    server = serve_fleet(app, port, host, stale_after)
    click.echo(f"serving fleet metrics on http://{host}:{server.server_port}/metrics", err=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.shutdown()
    app.close()
