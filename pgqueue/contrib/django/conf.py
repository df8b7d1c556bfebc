"""``settings.PGQUEUE``, read and checked in one place.

Every key is optional::

    PGQUEUE = {
        "DATABASE": "default",      # the DATABASES alias pgqueue connects with
        "SCHEMA": "pgqueue",        # else $PGQUEUE_SCHEMA, else "pgqueue"
        "APP": "myproject.jobs:app",  # your own DjangoApp (default: one built from these)
        "OPTIONS": {"pool_max_size": 4},  # App(...) keyword arguments
        "QUEUES": ["default"],      # what `manage.py pgqueue_work` works without -q
        "WORKER": {"concurrency": 10},  # WorkerConfig defaults for pgqueue_work
        "AUTODISCOVER": "tasks",    # pgqueue_work imports <app>.tasks of every app
        "MIGRATE": True,            # `manage.py migrate` also upgrades pgqueue's schema
    }

A misspelt key or a value of the wrong type raises ``ConfigurationError`` naming it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...db import validate_schema
from ...errors import ConfigurationError

KEYS = {"DATABASE", "SCHEMA", "APP", "OPTIONS", "QUEUES", "WORKER", "AUTODISCOVER", "MIGRATE"}


@dataclass(frozen=True)
class Settings:
    database: str = "default"
    schema: str | None = None
    app: Any = None
    options: dict[str, Any] = field(default_factory=dict)
    queues: tuple[str, ...] = ("default",)
    worker: dict[str, Any] = field(default_factory=dict)
    autodiscover: str | None = "tasks"
    migrate: bool = True

    @property
    def schema_name(self) -> str:
        """The schema, validated (``ConfigurationError`` for a bad name)."""
        return validate_schema(self.schema)


def _typed(raw: dict[str, Any], key: str, want: type | tuple[type, ...], default: Any) -> Any:
    value = raw.get(key, default)
    if value is not default and not isinstance(value, want):
        names = " or ".join(t.__name__ for t in (want if isinstance(want, tuple) else (want,)))
        raise ConfigurationError(
            f"settings.PGQUEUE[{key!r}] must be a {names}, got {type(value).__name__}"
        )
    return value


def read() -> Settings:
    """``settings.PGQUEUE`` as a ``Settings`` (all defaults when it is not set)."""
    from django.conf import settings

    raw = getattr(settings, "PGQUEUE", None) or {}
    if not isinstance(raw, dict):
        raise ConfigurationError("settings.PGQUEUE must be a dict")
    unknown = sorted(set(raw) - KEYS)
    if unknown:
        raise ConfigurationError(
            f"settings.PGQUEUE has unknown key(s) {', '.join(map(repr, unknown))}; "
            f"the keys are {', '.join(sorted(KEYS))}"
        )
    queues = _typed(raw, "QUEUES", (list, tuple), ("default",))
    return Settings(
        database=_typed(raw, "DATABASE", str, "default"),
        schema=_typed(raw, "SCHEMA", str, None),
        app=raw.get("APP"),
        options=dict(_typed(raw, "OPTIONS", dict, {})),
        queues=tuple(queues),
        worker=dict(_typed(raw, "WORKER", dict, {})),
        autodiscover=_typed(raw, "AUTODISCOVER", (str, type(None)), "tasks"),
        migrate=bool(_typed(raw, "MIGRATE", bool, True)),
    )


def table(name: str) -> str:
    """A quoted ``"schema"."name"`` for an unmanaged model's ``db_table`` (Django passes
    a name already in double quotes through as it is)."""
    return f'"{read().schema_name}"."{name}"'
