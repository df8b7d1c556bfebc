"""The Django app config: label ``pgqueue``; ``manage.py migrate`` also upgrades pgqueue's
schema unless ``settings.PGQUEUE['MIGRATE']`` is False."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig


class PgQueueConfig(AppConfig):
    name = "pgqueue.contrib.django"
    label = "pgqueue"
    verbose_name = "pgqueue"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        post_migrate.connect(_upgrade_schema, sender=self, dispatch_uid="pgqueue.upgrade")


def _upgrade_schema(
    sender: AppConfig, using: str = "default", verbosity: int = 1, **_: Any
) -> None:
    """After ``manage.py migrate`` (and the test runner's) on pgqueue's database: bring
    pgqueue's schema to this pgqueue's revision (idempotent; ``pgqueue.migrate.upgrade``
    runs in one transaction of its own and raises ``ConfigurationError`` saying why it
    could not)."""
    from ...migrate import upgrade
    from . import conf
    from .application import dsn_from_django

    settings = conf.read()
    if not settings.migrate or using != settings.database:
        return
    before, after = upgrade(dsn_from_django(using), settings.schema_name)
    if verbosity >= 1 and before != after:
        print(f"  pgqueue: schema {settings.schema_name!r} {before or 'new'} -> {after}")
