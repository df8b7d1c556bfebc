"""What every command shares: building the App from options, output, one-line errors."""

from __future__ import annotations

import importlib
import json
import os
import sys
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import click

from ..app import App
from ..errors import ConfigurationError


@dataclass
class Settings:
    """The group's options, resolved lazily into an App."""

    dsn: str | None
    schema: str | None
    app_path: str | None
    listen_dsn: str | None = None
    _app: App | None = field(default=None, repr=False)

    def app(self, *, strict_tasks: bool | None = None) -> App:
        """The user's App (``--app``) with --dsn/--schema applied, or a bare one."""
        if self._app is None:
            if self.app_path:
                user_app = load_app(self.app_path)
                dsn = self.dsn if self.dsn is not None else user_app._dsn_arg
                schema = self.schema if self.schema is not None else user_app.schema
                app = App(
                    dsn,
                    schema=schema,
                    strict_tasks=user_app.strict_tasks,
                    pool_max_size=user_app.pool_max_size,
                    max_payload_bytes=user_app.limits.max_payload_bytes,
                    max_depth=user_app.limits.max_depth,
                    listen_dsn=self.listen_dsn or user_app._listen_dsn_arg,
                )
                app.tasks = user_app.tasks
                app.schedules = user_app.schedules
                app.hooks = user_app.hooks  # around_enqueue, around_run, ... (tracing)
                for t in app.tasks.values():
                    t.app = app
            else:
                app = App(
                    self.dsn, schema=self.schema, strict_tasks=False, listen_dsn=self.listen_dsn
                )
            self._app = app
            ctx = click.get_current_context(silent=True)
            if ctx is not None:  # close the pool when the command ends, not at exit/GC
                ctx.call_on_close(app.close)
        if strict_tasks is not None:
            self._app.strict_tasks = strict_tasks
        return self._app


def load_app(path: str) -> App:
    """Import ``module:attribute`` and return the App there.

    Raises ``ConfigurationError`` with the fix when the module or attribute is missing.
    """
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ConfigurationError(
            f"--app {path!r} should be 'module:attribute', e.g. --app myproject.jobs:app"
        )
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"cannot import {module_name!r} for --app ({exc}); run from the project directory "
            "or put it on PYTHONPATH"
        ) from exc
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise ConfigurationError(f"module {module_name!r} has no attribute {attr!r}") from None
    if not isinstance(obj, App):
        raise ConfigurationError(f"{path} is a {type(obj).__name__}, not a pgqueue.App")
    return obj


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    return str(value)


def emit_json(data: Any) -> None:
    """Print ``data`` as indented JSON (dates as ISO 8601 strings, numerics as numbers)."""
    click.echo(json.dumps(data, indent=2, default=_json_default))


def clip(text: str, width: int) -> str:
    """``text`` on one line, cut to ``width`` characters with a trailing '…'."""
    flat = " ".join(text.split())
    if len(flat) <= width:
        return flat
    return flat[: max(width - 1, 0)] + "…"


def fitted_table(
    headers: list[str], rows: list[list[Any]], shrink: dict[int, int], width: int = 80
) -> str:
    """``table`` made to fit ``width`` columns: the columns in ``shrink`` (index -> the
    narrowest it may get) lose a character at a time, widest first, and their cells are
    cut with '…'. Only text columns should be in ``shrink``."""
    widths = [
        max([len(h)] + [len(clip("" if r[i] is None else str(r[i]), 10**6)) for r in rows])
        for i, h in enumerate(headers)
    ]
    while sum(widths) + 2 * (len(widths) - 1) > width:
        candidates = [i for i, least in shrink.items() if widths[i] > max(least, len(headers[i]))]
        if not candidates:
            break
        widest = max(candidates, key=lambda i: (widths[i], i))
        widths[widest] -= 1
    cut = [
        [
            clip("" if v is None else str(v), widths[i]) if i in shrink else v
            for i, v in enumerate(row)
        ]
        for row in rows
    ]
    return table(headers, cut)


def seconds_since(moment: datetime | None, now: datetime | None = None) -> float | None:
    """Seconds from ``moment`` to ``now`` (default: this machine's clock), never below 0;
    None for None."""
    if moment is None:
        return None
    now = now or datetime.now(moment.tzinfo)
    return max((now - moment).total_seconds(), 0.0)


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A plain-text table: left-aligned text, right-aligned numbers."""
    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    numeric = [
        all(isinstance(r[i], (int, float)) for r in rows) and rows != []
        for i in range(len(headers))
    ]

    def line(values: list[str]) -> str:
        out = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(out).rstrip()

    return "\n".join([line(headers)] + [line(r) for r in cells])
