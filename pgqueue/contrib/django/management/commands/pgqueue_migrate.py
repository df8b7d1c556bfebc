"""``manage.py pgqueue_migrate [--sql]``: upgrade pgqueue's schema in Django's database."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from pgqueue.errors import PgQueueError


class Command(BaseCommand):
    help = (
        "Create or upgrade pgqueue's schema (settings.PGQUEUE['SCHEMA']) in the database of "
        "settings.PGQUEUE['DATABASE'], in one transaction; --sql prints the DDL instead."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--sql", action="store_true", help="Print the DDL, change nothing.")

    def handle(self, *args: Any, **options: Any) -> None:
        from pgqueue.contrib.django import conf
        from pgqueue.contrib.django.application import dsn_from_django
        from pgqueue.migrate import upgrade, upgrade_sql

        try:
            settings = conf.read()
            if options["sql"]:
                self.stdout.write(upgrade_sql(settings.schema_name))
                return
            before, after = upgrade(
                dsn_from_django(settings.database), settings.schema_name,
                notify=self.stdout.write,
            )  # fmt: skip
        except PgQueueError as exc:
            raise CommandError(str(exc)) from None
        if before == after:
            self.stdout.write(f"schema {settings.schema_name!r} is up to date ({after})")
        else:
            self.stdout.write(f"schema {settings.schema_name!r}: {before or 'new'} -> {after}")
