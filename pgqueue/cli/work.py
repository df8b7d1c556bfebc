"""``pgqueue work``."""

from __future__ import annotations

import asyncio
import logging
import os
import sys

import click

from .. import logs
from ..errors import ConfigurationError
from .common import Settings
from .durations import Duration


@click.command()
@click.option(
    "-q",
    "--queue",
    "queues",
    multiple=True,
    metavar="NAME",
    help="Queue to work (repeat for several). Default: 'default'.",
)
@click.option(
    "-c",
    "--concurrency",
    type=int,
    default=10,
    show_default=True,
    help="Jobs at once per process (async handlers as tasks, sync ones in threads).",
)
@click.option(
    "-p",
    "--processes",
    type=int,
    default=1,
    show_default=True,
    help="Worker processes to run and supervise (restarted if one dies).",
)
@click.option(
    "--lease",
    type=Duration(1, 86_400),
    default="30s",
    show_default=True,
    metavar="DURATION",
    help="How long a job stays ours without a heartbeat; renewed every lease/3.",
)
@click.option(
    "--poll-interval",
    type=Duration(0.01, 3_600),
    default="2s",
    show_default=True,
    metavar="DURATION",
    help="Longest sleep without a NOTIFY (the fallback when LISTEN is down).",
)
@click.option(
    "--shutdown-timeout",
    type=Duration(0, 86_400),
    default="30s",
    show_default=True,
    metavar="DURATION",
    help="On SIGTERM, wait this long for running jobs, then hand them back.",
)
@click.option(
    "--prefetch",
    type=int,
    default=0,
    show_default=True,
    metavar="N",
    help="Claim up to N jobs ahead into a local buffer: faster for many short jobs; "
    "leave 0 for long jobs (a buffered job waits behind this worker's running ones).",
)
@click.option(
    "--keep-succeeded",
    type=Duration(),
    default="7d",
    show_default=True,
    metavar="DURATION",
    help="Delete succeeded jobs this long after they finished.",
)
@click.option(
    "--keep-failed",
    type=Duration(),
    default="30d",
    show_default=True,
    metavar="DURATION",
    help="Delete failed (dead-letter) jobs this long after they failed.",
)
@click.option(
    "--unknown-task-timeout",
    type=Duration(),
    default="1h",
    show_default=True,
    metavar="DURATION",
    help="A worker that does not know a job's task hands it back without using an attempt "
    "(rolling deploys); once no live worker of its queue has known the task this long "
    "(30s, 15m, 1h, 2d), its jobs fail with kind unknown_task.",
)
@click.option(
    "--fast-claims",
    is_flag=True,
    help="Commit claims without waiting for the disk flush (faster wake-up). After a "
    "PostgreSQL crash a just-claimed job may run again; nothing enqueued or finished is lost.",
)
@click.option(
    "--heartbeat",
    type=click.Choice(["process", "thread"]),
    default="process",
    envvar="PGQUEUE_HEARTBEAT",
    show_default=True,
    help="Renew leases from a sidecar process no handler can starve (process), or from a "
    "thread of the worker (one process fewer; a handler holding the GIL can starve it).",
)
@click.option(
    "--no-listen",
    is_flag=True,
    help="Poll only (every --poll-interval), no LISTEN connection. Behind pgbouncer in "
    "transaction mode pgqueue finds out by itself that LISTEN cannot work and polls every "
    "0.5 s; give --listen-dsn to wake on NOTIFY there.",
)
@click.option(
    "--listen-dsn",
    "work_listen_dsn",
    metavar="DSN",
    help="A direct connection (not through pgbouncer) for LISTEN, when --dsn goes through "
    "pgbouncer in transaction mode; same as the global --listen-dsn or $PGQUEUE_LISTEN_DSN.",
)
@click.option(
    "--burst",
    is_flag=True,
    help="Run the jobs that are due, then exit: 0 if every job it ran succeeded, 1 if any "
    "failed or will retry (for CI and scripts). Scheduled jobs are left for later.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65_535),
    default=None,
    metavar="PORT",
    help="Serve Prometheus metrics on http://HOST:PORT/metrics (needs pgqueue[metrics]); "
    "with --processes, one endpoint for all of them (series labelled process).",
)
@click.option(
    "--metrics-host",
    default="0.0.0.0",
    show_default=True,
    metavar="HOST",
    help="Address the metrics server listens on.",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one object per line, for log shippers.",
)
@click.pass_obj
def work(
    settings: Settings,
    queues: tuple[str, ...],
    concurrency: int,
    processes: int,
    lease: float,
    poll_interval: float,
    shutdown_timeout: float,
    prefetch: int,
    keep_succeeded: float,
    keep_failed: float,
    unknown_task_timeout: float,
    fast_claims: bool,
    heartbeat: str,
    no_listen: bool,
    work_listen_dsn: str | None,
    burst: bool,
    metrics_port: int | None,
    metrics_host: str,
    log_level: str,
    log_format: str,
) -> None:
    """Run a worker: claim jobs of your app's tasks and run them.

    Needs your app: --app module:attr (or $PGQUEUE_APP). Stops gracefully on
    SIGTERM/SIGINT: no new claims, running jobs get --shutdown-timeout to finish,
    the rest go back to the queue at once; a second Ctrl-C stops now. A DURATION is
    seconds (90, 0.5) or a number with a unit: 30s, 5m, 1h30m, 7d.

    \b
    Examples:
      pgqueue --app myproject.jobs:app work
      pgqueue --app myproject.jobs:app work -q emails -q reports -c 50
      pgqueue --app myproject.jobs:app work --processes 4 --log-format json
      pgqueue --app myproject.jobs:app work --burst     # drain what is due, then exit
      pgqueue --app myproject.jobs:app work --metrics-port 9100   # Prometheus
    """
    from ..maintenance import Retention
    from ..worker import Worker, WorkerConfig
    from ..worker.supervisor import supervise

    logs.configure(log_level, log_format)
    if not settings.app_path:
        raise ConfigurationError(
            "pgqueue work needs your app: pass --app module:attr (e.g. --app myproject.jobs:app) "
            "or set PGQUEUE_APP"
        )
    config = WorkerConfig(
        queues=list(queues) or ["default"],
        concurrency=concurrency,
        lease=lease,
        poll_interval=poll_interval,
        shutdown_timeout=shutdown_timeout,
        listen=not no_listen,
        prefetch=prefetch,
        fast_claims=fast_claims,
        heartbeat=heartbeat,
        retention=Retention(succeeded=keep_succeeded, failed=keep_failed),
        unknown_task_timeout=unknown_task_timeout,
        burst=burst,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
    )
    if processes < 1:
        raise ConfigurationError("--processes must be at least 1")
    if work_listen_dsn:
        settings.listen_dsn = work_listen_dsn
    if burst and processes > 1:
        raise ConfigurationError("--burst runs one worker process: drop --processes")
    app = settings.app()
    if not app.tasks:
        raise ConfigurationError(f"{settings.app_path} has no tasks registered (@app.task)")
    if metrics_port is not None:
        from ..metrics import require

        require()
    if processes > 1:
        app._probe()  # fail here, once, if the database or schema is not usable
        argv = [*_without_processes(sys.argv[1:]), "--processes", "1"]
        if metrics_port is None:
            sys.exit(supervise(processes, argv))
        from ..metrics.relay import Relay

        relay = Relay(processes)
        relay.serve(metrics_port, metrics_host)
        # each child serves on a free local port; the relay scrapes them
        argv = _without(_without(argv, "--metrics-port"), "--metrics-host")
        argv += ["--metrics-port", "0", "--metrics-host", "127.0.0.1"]
        try:
            code = supervise(processes, argv, relay)
        finally:
            relay.close()
        sys.exit(code)
    worker = Worker(app, config)
    asyncio.run(worker.run(handle_signals=True))
    code = 0
    if burst:
        done = worker.burst_outcome
        code = 0 if done["failed"] == done["retried"] == done["lost"] == 0 else 1
        click.echo(
            f"burst: {done['succeeded']} succeeded, {done['failed']} failed, "
            f"{done['retried']} to retry, {done['lost']} lost",
            err=True,
        )
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    # A sync handler still running in an abandoned thread must not keep the process
    # alive: its job was already handed back to the queue.
    os._exit(code)


def _without(argv: list[str], option: str) -> list[str]:
    """``argv`` minus ``OPTION VALUE`` and ``OPTION=VALUE`` (a long option)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(option + "="):
            out.append(arg)
    return out


def _without_processes(argv: list[str]) -> list[str]:
    """``argv`` minus ``--processes N`` / ``-p N`` / ``--processes=N`` / ``-pN``."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--processes", "-p"):
            skip = True
        elif not (arg.startswith("--processes=") or (arg.startswith("-p") and arg[:2] != "--")):
            out.append(arg)
    return out
