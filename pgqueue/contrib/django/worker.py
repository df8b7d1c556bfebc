"""What ``manage.py pgqueue_work`` adds around pgqueue's worker: the tasks modules of
the installed apps, and Django's connection hygiene around each job."""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.util
import inspect
from collections.abc import Callable
from typing import Any

from ...app import App


def autodiscover(module: str | None) -> list[str]:
    """Import ``<app>.<module>`` of every installed Django app that has one (so their
    ``@app.task`` functions register); the names imported. An error inside such a module
    propagates: a worker that cannot import its tasks must not start."""
    if not module:
        return []
    from django.apps import apps

    found = []
    for config in apps.get_app_configs():
        name = f"{config.name}.{module}"
        try:
            spec = importlib.util.find_spec(name)
        except ModuleNotFoundError:
            continue
        if spec is not None:
            importlib.import_module(name)
            found.append(name)
    return found


def _hygienic(func: Callable[..., Any], one_shot_thread: bool) -> Callable[..., Any]:
    """``func`` with Django's ``close_old_connections()`` before and after, as Django does
    around a request: a connection past ``CONN_MAX_AGE``, broken, or left in a failed
    transaction by the last job is closed, not handed to the next one. A handler with a
    timeout runs in a thread of its own that ends with the job, so its connections are
    closed outright (they would otherwise stay open until that thread is collected)."""
    from django.db import close_old_connections, connections

    if inspect.iscoroutinefunction(func):
        from asgiref.sync import sync_to_async

        # The ORM from async code runs in asgiref's thread-sensitive thread: clean there.
        clean = sync_to_async(close_old_connections)

        @functools.wraps(func)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            await clean()
            try:
                return await func(*args, **kwargs)
            finally:
                await clean()

        return run_async

    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        close_old_connections()
        try:
            return func(*args, **kwargs)
        finally:
            if one_shot_thread:
                connections.close_all()
            else:
                close_old_connections()

    return run


def with_connection_hygiene(app: App) -> None:
    """Wrap every task of ``app`` that the worker runs in ``_hygienic``. Only the
    registry the worker reads changes: the ``Task`` objects your code imports (and calls
    directly, or defers) stay as they are."""
    for name, task in list(app.tasks.items()):
        if getattr(task.func, "__pgqueue_hygienic__", False):
            continue
        wrapped = _hygienic(task.func, one_shot_thread=task.timeout is not None)
        wrapped.__pgqueue_hygienic__ = True  # type: ignore[attr-defined]
        app.tasks[name] = dataclasses.replace(task, func=wrapped)
