"""``manage.py pgqueue_work``: a pgqueue worker for the project's tasks."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from pgqueue.errors import PgQueueError


class Command(BaseCommand):
    help = (
        "Run a pgqueue worker for this project's tasks (the `tasks` module of every "
        "installed app). SIGTERM/SIGINT: no new claims, running jobs get "
        "--shutdown-timeout, the rest go back to the queue. --burst: run what is due, then "
        "exit (status 1 if a job failed or will retry)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "-q",
            "--queue",
            action="append",
            dest="queues",
            metavar="NAME",
            help="Queue to work (repeat). Default: settings.PGQUEUE['QUEUES'].",
        )
        parser.add_argument(
            "-c",
            "--concurrency",
            type=int,
            help="Jobs at once (sync handlers in threads). Default 10.",
        )
        parser.add_argument(
            "--burst", action="store_true", help="Run the jobs that are due, then exit."
        )
        parser.add_argument(
            "--log-level",
            choices=["debug", "info", "warning", "error"],
            help="Send pgqueue's logs to stderr at this level (default: as settings.LOGGING "
            "has it; Python shows warnings and errors).",
        )
        parser.add_argument("--log-format", choices=["text", "json"], default="text")
        parser.add_argument("--shutdown-timeout", type=float, metavar="SECONDS")
        parser.add_argument("--poll-interval", type=float, metavar="SECONDS")
        parser.add_argument("--no-listen", action="store_true",
                            help="Poll only, no LISTEN connection.")  # fmt: skip

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            self._work(options)
        except PgQueueError as exc:
            raise CommandError(str(exc)) from None

    def _work(self, options: dict[str, Any]) -> None:
        from pgqueue import logs
        from pgqueue.contrib.django import conf
        from pgqueue.contrib.django.application import get_app
        from pgqueue.contrib.django.worker import autodiscover, with_connection_hygiene
        from pgqueue.worker import Worker, WorkerConfig

        if options["log_level"]:
            logs.configure(options["log_level"], options["log_format"])
        settings = conf.read()
        app = get_app()
        autodiscover(settings.autodiscover)
        if not app.tasks:
            raise CommandError(
                "no pgqueue tasks registered: define them with "
                "`from pgqueue.contrib.django import app` and @app.task in <yourapp>/tasks.py"
            )
        with_connection_hygiene(app)
        values = dict(settings.worker)
        values["queues"] = list(options["queues"] or settings.queues)
        for key in ("concurrency", "shutdown_timeout", "poll_interval"):
            if options[key] is not None:
                values[key] = options[key]
        if options["no_listen"]:
            values["listen"] = False
        values["burst"] = options["burst"]
        try:
            config = WorkerConfig(**values)
        except TypeError as exc:
            raise CommandError(f"settings.PGQUEUE['WORKER']: {exc}") from None
        worker = Worker(app, config)
        main = threading.current_thread() is threading.main_thread()
        asyncio.run(worker.run(handle_signals=main))
        if options["burst"]:
            done = worker.burst_outcome
            line = (
                f"burst: {done['succeeded']} succeeded, {done['failed']} failed, "
                f"{done['retried']} to retry, {done['lost']} lost"
            )
            if done["failed"] or done["retried"] or done["lost"]:
                raise CommandError(line, returncode=1)
            if options["verbosity"] >= 1:
                self.stdout.write(line)
