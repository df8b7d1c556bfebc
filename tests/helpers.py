"""Helpers for tests: wait on a condition with a deadline, never a bare sleep."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from pgqueue import App

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T], *, timeout: float = 10.0, interval: float = 0.02, what: str = ""
) -> T:
    """Poll ``condition`` until it returns something truthy; return that.

    Raises ``AssertionError`` naming ``what`` (and the last value) when ``timeout`` passes.
    """
    deadline = time.monotonic() + timeout
    last: T = condition()
    while not last:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what or condition}: {last!r}"
            )
        time.sleep(interval)
        last = condition()
    return last


def positional(sql: str) -> str:
    """``%(name)s`` -> ``$n`` (the same name gets the same number), ``%%`` -> ``%``: a
    pgqueue query as PostgreSQL's own PREPARE takes it."""
    names: list[str] = []

    def number(m: re.Match[str]) -> str:
        if m.group(1) not in names:
            names.append(m.group(1))
        return f"${names.index(m.group(1)) + 1}"

    return re.sub(r"%\((\w+)\)s", number, sql).replace("%%", "%")


def generic_plan(conn: Any, sql: str, args: str) -> str:
    """EXPLAIN of ``sql`` as a worker runs it (plan_cache_mode = force_generic_plan: a
    plan made without the parameter values), called with the SQL literals ``args``."""
    conn.execute("SET plan_cache_mode = force_generic_plan")
    conn.execute("PREPARE q AS " + positional(sql))
    try:
        rows = conn.execute(f"EXPLAIN EXECUTE q({args})").fetchall()
        return "\n".join(str(r[0]) for r in rows)
    finally:
        conn.execute("DEALLOCATE q")
        conn.execute("RESET plan_cache_mode")


def arun(app: App, coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(coro)`` for a coroutine that uses ``app``'s async pool: the pool belongs
    to this event loop, so it is closed before the loop ends (a later ``arun`` opens a new
    one)."""

    async def main() -> T:
        try:
            return await coro
        finally:
            pool, app._apool = app._apool, None
            if pool is not None:
                await pool.close()

    return asyncio.run(main())
