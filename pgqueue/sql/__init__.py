"""Every SQL statement pgqueue runs, loaded once from ``queries.sql``.

Queries are named table-first (``job_claim_batch``, ``job_complete_fenced``); the file
says *why* where locking or the planner is subtle. ``{schema}`` in a query is replaced
by the (validated, quoted) schema name, ``{channel}`` by the NOTIFY channel and
``{done_channel}`` by the channel for finished jobs.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

_NAME = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


@lru_cache(maxsize=1)
def _raw() -> dict[str, str]:
    text = resources.files(__package__).joinpath("queries.sql").read_text(encoding="utf-8")
    parts = _NAME.split(text)
    # parts = [preamble, name1, body1, name2, body2, ...]
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise RuntimeError(f"queries.sql defines {name!r} twice")
        queries[name] = body.strip().rstrip(";")
    return queries


def channel_for(schema: str) -> str:
    """The NOTIFY channel that carries queue names for ``schema``."""
    return f"{schema}_jobs"


def cancel_channel_for(schema: str) -> str:
    """The NOTIFY channel that carries ids of running jobs whose cancellation was asked."""
    return f"{schema}_cancel"


def done_channel_for(schema: str) -> str:
    """The NOTIFY channel that carries ids of jobs that just finished (comma-separated)."""
    return f"{schema}_done"


@lru_cache(maxsize=32)
def queries(schema: str) -> dict[str, str]:
    """All queries with ``schema`` filled in. ``schema`` must already be validated."""
    quoted = '"' + schema + '"'
    return {
        name: body.replace("{schema}", quoted)
        .replace("{channel}", channel_for(schema))
        .replace("{done_channel}", done_channel_for(schema))
        for name, body in _raw().items()
    }


def plain(name: str) -> str:
    """A query that names no schema object (``KeyError`` if there is no such query)."""
    body = _raw()[name]
    assert "{schema}" not in body, f"{name} names the schema: use query(schema, name)"
    return body


def query(schema: str, name: str) -> str:
    """One query by name; ``KeyError`` if there is no such query (a bug, not user input)."""
    return queries(schema)[name]
