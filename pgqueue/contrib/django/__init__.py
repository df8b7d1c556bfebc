"""pgqueue for Django: ``INSTALLED_APPS = [..., "pgqueue.contrib.django"]``.

- ``settings.PGQUEUE`` (all optional): ``DATABASE`` (the alias whose settings pgqueue
  connects with, default ``"default"``: no second DSN), ``SCHEMA``, ``APP`` (a
  ``"module:attr"`` path to your own ``DjangoApp``), ``OPTIONS`` (``App`` keyword
  arguments), ``QUEUES`` and ``WORKER`` (defaults of ``manage.py pgqueue_work``),
  ``AUTODISCOVER`` (the module of every installed app the worker imports, ``"tasks"``),
  ``MIGRATE`` (``manage.py migrate`` also upgrades pgqueue's schema, default True).
- ``from pgqueue.contrib.django import app``; ``@app.task`` in ``yourapp/tasks.py``.
  Inside ``transaction.atomic()`` a job is written on Django's own connection, in that
  transaction: it exists only if the transaction commits.
- ``manage.py pgqueue_work [--burst]``, ``manage.py pgqueue_migrate [--sql]``.
- Read-only admin pages: jobs (``all_jobs``) and queues (``queue_stats``).

Importing this module touches neither the database nor Django's app registry.
"""

from __future__ import annotations

from typing import Any

from .application import DjangoApp, dsn_from_django, get_app

__all__ = ["DjangoApp", "app", "dsn_from_django", "get_app"]


def __getattr__(name: str) -> Any:
    # ``from pgqueue.contrib.django import app``: built from settings.PGQUEUE on first use.
    if name == "app":
        return get_app()
    raise AttributeError(f"module 'pgqueue.contrib.django' has no attribute {name!r}")
