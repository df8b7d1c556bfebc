"""Least-privilege database roles: what a producer, a worker, an operator and a reader
may do in a pgqueue schema, and ``pgqueue grant`` that gives it to a role.

The model is declarative and lives here only: ``OBJECTS`` names every table, view,
sequence and function the migrations create; ``KINDS`` says, per kind of role, which
privileges it has on which of them; ``OWNER_ONLY`` lists what no kind gets. The
functions in ``DEFINER`` run with their owner's rights (migration 0007), so a role that
may call one needs no rights on the tables it touches: the operator changes jobs only
through retry_job/cancel_job/prune_jobs/..., the producer replaces a queued job's
arguments only through enqueue_replacing. No function is executable by PUBLIC.

``audit`` compares the model with a migrated schema (tests/integration/test_roles_model.py
runs it): an object a future migration adds fails it until the model says who may use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql as psql

from .db import first_line
from .errors import ConfigurationError
from .sql import query

TABLE, VIEW, SEQUENCE, FUNCTION = "table", "view", "sequence", "function"

#: Every object of a migrated schema, by name, with its type.
OBJECTS: dict[str, str] = {
    "pgqueue_version": TABLE,
    "jobs": TABLE,
    "succeeded_jobs": TABLE,
    "workers": TABLE,
    "queues": TABLE,
    "periodic": TABLE,
    "unknown_tasks": TABLE,
    "queue_stats": VIEW,
    "running_jobs": VIEW,
    "dead_jobs": VIEW,
    "all_jobs": VIEW,
    "jobs_id_seq": SEQUENCE,
    "enqueue": FUNCTION,
    "enqueue_replacing": FUNCTION,
    "dependency_state": FUNCTION,
    "resolve_dependents": FUNCTION,
    "retry_job": FUNCTION,
    "retry_failed": FUNCTION,
    "cancel_job": FUNCTION,
    "pause_queue": FUNCTION,
    "resume_queue": FUNCTION,
    "set_queue_limits": FUNCTION,
    "prune_jobs": FUNCTION,
    "delete_job": FUNCTION,
    "jobs_notify_insert": FUNCTION,
}

#: Objects no kind is granted, and why.
OWNER_ONLY: dict[str, str] = {
    "jobs_notify_insert": "the jobs NOTIFY trigger's function: it fires for every insert "
    "whoever inserts (a trigger needs no EXECUTE); nobody calls it",
}

#: Functions that run with their owner's rights (SECURITY DEFINER, search_path pinned).
DEFINER = frozenset(
    {
        "enqueue",
        "enqueue_replacing",
        "resolve_dependents",
        "retry_job",
        "retry_failed",
        "cancel_job",
        "pause_queue",
        "resume_queue",
        "set_queue_limits",
        "prune_jobs",
        "delete_job",
    }
)

#: The columns of jobs a producer writes: the COPY path (id, reserved from jobs_id_seq),
#: dedupe keys, dependencies (a job with after= starts waiting, or cancelled with an
#: error). Never attempt, worker_id, lease_expires_at, result, started_at, ...
PRODUCER_JOB_COLUMNS = (
    "id",
    "queue",
    "task",
    "args",
    "kwargs",
    "priority",
    "run_at",
    "max_attempts",
    "dedupe_key",
    "group_key",
    "depends_on",
    "state",
    "finished_at",
    "errors",
    "headers",
)


@dataclass(frozen=True)
class Privilege:
    """One privilege on one object; on some columns only when ``columns`` is set."""

    name: str
    columns: tuple[str, ...] = ()


def _p(*names: str) -> tuple[Privilege, ...]:
    return tuple(Privilege(n) for n in names)


@dataclass(frozen=True)
class Kind:
    """A kind of role: what it is for, the kinds it includes, its own grants."""

    summary: str
    includes: tuple[str, ...] = ()
    grants: dict[str, tuple[Privilege, ...]] = field(default_factory=dict)


_READ = _p("SELECT")
_CALL = _p("EXECUTE")

KINDS: dict[str, Kind] = {
    "reader": Kind(
        "reads everything (views, tables, workers); changes nothing: pgqueue status, "
        "jobs list/show, workers, periodic list",
        grants={
            name: _READ
            for name in (
                "pgqueue_version",
                "jobs",
                "succeeded_jobs",
                "workers",
                "queues",
                "periodic",
                "unknown_tasks",
                "queue_stats",
                "running_jobs",
                "dead_jobs",
                "all_jobs",
            )
        },
    ),
    "producer": Kind(
        "enqueues (Python incl. COPY and the caller's transaction, CLI, SQL enqueue()), "
        "unique jobs incl. replace, after=; reads jobs and results; never updates or "
        "deletes a job",
        grants={
            "pgqueue_version": _READ,
            "jobs": (Privilege("SELECT"), Privilege("INSERT", PRODUCER_JOB_COLUMNS)),
            "all_jobs": _READ,
            "jobs_id_seq": _p("USAGE"),  # nextval() for the COPY path's ids
            "enqueue": _CALL,
            "enqueue_replacing": _CALL,
            "dependency_state": _CALL,  # after=: the state a new job starts in
            "resolve_dependents": _CALL,  # after=: a dependency finished meanwhile
        },
    ),
    "worker": Kind(
        "everything `pgqueue work` does: claims, completions, heartbeats, its workers "
        "row, maintenance (reaper, scheduler, pruner, aging); enqueues as a producer",
        includes=("producer",),
        grants={
            "jobs": _p("SELECT", "INSERT", "UPDATE", "DELETE"),
            # UPDATE: the pruner locks the rows it deletes (FOR UPDATE SKIP LOCKED)
            "succeeded_jobs": _p("SELECT", "INSERT", "UPDATE", "DELETE"),
            "workers": _p("SELECT", "INSERT", "UPDATE", "DELETE"),
            # a claim locks a limited queue's row and counts its rate window; aging stamps
            # its pass. Pausing and limits stay the operator's.
            "queues": (
                Privilege("SELECT"),
                Privilege("UPDATE", ("rate_window_start", "rate_window_count", "priority_aged_at")),
            ),
            "periodic": _p("SELECT", "INSERT", "UPDATE"),
            # rolling deploys: a hand-back notes the task, the sweep forgets or fails it
            "unknown_tasks": _p("SELECT", "INSERT", "UPDATE", "DELETE"),
        },
    ),
    "operator": Kind(
        "a reader that also retries, cancels, deletes finished jobs, pauses/resumes, sets "
        "limits and prunes, "
        "through the SQL functions only (no direct writes to any table)",
        includes=("reader",),
        grants={
            name: _CALL
            for name in (
                "retry_job",
                "retry_failed",
                "cancel_job",
                "pause_queue",
                "resume_queue",
                "set_queue_limits",
                "prune_jobs",
                "delete_job",
            )
        },
    ),
}


def check_kind(kind: str) -> Kind:
    """The kind named ``kind``; ``ConfigurationError`` naming the choices otherwise."""
    try:
        return KINDS[kind]
    except KeyError:
        raise ConfigurationError(
            f"unknown kind {kind!r}: use one of {', '.join(sorted(KINDS))}"
        ) from None


def check_role_name(role: str) -> str:
    """``role`` if it can name a role; ``ConfigurationError`` otherwise."""
    if not role or len(role.encode()) > 63 or any(ord(c) < 32 or ord(c) == 127 for c in role):
        raise ConfigurationError(
            f"invalid role name {role!r}: 1 to 63 bytes, no control characters"
        )
    return role


def privileges(kind: str) -> dict[str, dict[str, tuple[str, ...] | None]]:
    """Object -> privilege -> columns (None: the whole object) for ``kind`` and the kinds
    it includes. A privilege on the whole object absorbs the same one on columns."""
    merged: dict[str, dict[str, tuple[str, ...] | None]] = {}
    pending, seen = [kind], set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        spec = check_kind(name)
        pending.extend(spec.includes)
        for obj, privs in spec.grants.items():
            held = merged.setdefault(obj, {})
            for p in privs:
                if p.name in held and held[p.name] is None:
                    continue
                if not p.columns:
                    held[p.name] = None
                else:
                    before = held.get(p.name) or ()
                    held[p.name] = tuple(dict.fromkeys(before + p.columns))
    return {obj: merged[obj] for obj in OBJECTS if obj in merged}


def _privilege_list(held: dict[str, tuple[str, ...] | None]) -> psql.Composable:
    parts: list[psql.Composable] = []
    for name in sorted(held):
        columns = held[name]
        if columns is None:
            parts.append(psql.SQL(name))
        else:
            cols = psql.SQL(", ").join(psql.Identifier(c) for c in columns)
            parts.append(psql.SQL("{} ({})").format(psql.SQL(name), cols))
    return psql.SQL(", ").join(parts)


_CLASS = {TABLE: "TABLE", VIEW: "TABLE", SEQUENCE: "SEQUENCE", FUNCTION: "FUNCTION"}


def statements(schema: str, kind: str, role: str) -> list[psql.Composed]:
    """The GRANT statements that give ``role`` what ``kind`` may do in ``schema``
    (validated). Identifiers are quoted; functions are named without their argument
    types (each name is unique in the schema: ``audit`` checks it)."""
    check_role_name(role)
    who = psql.Identifier(role)
    out = [psql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(psql.Identifier(schema), who)]
    for obj, held in privileges(kind).items():
        out.append(
            psql.SQL("GRANT {} ON {} {} TO {}").format(
                _privilege_list(held),
                psql.SQL(_CLASS[OBJECTS[obj]]),
                psql.Identifier(schema, obj),
                who,
            )
        )
    return out


def script(schema: str, kind: str, role: str) -> str:
    """``statements`` as text for a DBA, one per line, with a header comment."""
    who = psql.Identifier(check_role_name(role)).as_string()
    lines = [f"-- pgqueue grant {kind} {who} (schema {schema}): {check_kind(kind).summary}"]
    lines += [s.as_string() + ";" for s in statements(schema, kind, role)]
    return "\n".join(lines) + "\n"


def grant(conn: psycopg.Connection[Any], schema: str, kind: str, role: str) -> int:
    """Apply ``kind``'s grants to ``role`` on an open connection, in one transaction;
    returns how many statements ran. Idempotent (granting again changes nothing).

    Raises ``ConfigurationError`` (and grants nothing) for an unknown kind, a role that
    does not exist, or when this connection's role may not grant some of it (PostgreSQL
    only warns then: "no privileges were granted"); the schema must be migrated first.
    """
    from .migrate import check_state, read_state

    check_kind(kind)
    check_role_name(role)
    check_state(read_state(conn, schema), schema)
    row = conn.execute(query(schema, "role_exists"), {"role": role}).fetchone()
    if not row or not row[0]:
        raise ConfigurationError(
            f"role {role!r} does not exist: create it first (CREATE ROLE ... LOGIN)"
        )
    warnings: list[str] = []

    def notice(diag: psycopg.errors.Diagnostic) -> None:
        if diag.severity_nonlocalized == "WARNING" and diag.message_primary:
            warnings.append(diag.message_primary)

    todo = statements(schema, kind, role)
    conn.add_notice_handler(notice)
    try:
        with conn.transaction():
            for statement in todo:
                conn.execute(statement)
            if warnings:
                raise psycopg.Rollback()
    except psycopg.errors.InsufficientPrivilege as exc:
        raise _not_allowed(conn, schema, first_line(exc)) from None
    finally:
        conn.remove_notice_handler(notice)
    if warnings:
        raise _not_allowed(conn, schema, warnings[0])
    return len(todo)


def _not_allowed(conn: psycopg.Connection[Any], schema: str, why: str) -> ConfigurationError:
    return ConfigurationError(
        f"role {conn.info.user!r} may not grant on schema {schema!r} ({why}); nothing was "
        "granted: run it as the role that ran `pgqueue migrate` (the owner) or a superuser"
    )


def audit(conn: psycopg.Connection[Any], schema: str) -> list[str]:
    """Where the model and the migrated ``schema`` disagree, one line each (empty: they
    agree): an object the model does not name (or names with another type, or that is
    missing), a function overloaded, a function whose SECURITY DEFINER or pinned
    search_path differs from ``DEFINER``, an object PUBLIC may use, a granted object
    in ``OWNER_ONLY``, a column a grant names that the table lacks."""
    rows = conn.execute(query(schema, "schema_objects")).fetchall()
    problems: list[str] = []
    found: dict[str, str] = {}
    for name, kind, definer, settings, public, columns in rows:
        if name in found:
            problems.append(f"{name}: more than one object (an overload?) has this name")
        found[name] = kind
        if OBJECTS.get(name) != kind:
            problems.append(
                f"{name}: a {kind} the role model does not know (add it to pgqueue/roles.py "
                "OBJECTS, and to a kind or OWNER_ONLY)"
                if name not in OBJECTS
                else f"{name}: a {kind}, the model says {OBJECTS[name]}"
            )
        if public:
            problems.append(f"{name}: PUBLIC may use it (REVOKE ... FROM PUBLIC in a migration)")
        if kind == FUNCTION:
            pinned = "search_path=pg_catalog, pg_temp" in (settings or [])
            if (name in DEFINER) != bool(definer) or (name in DEFINER) != pinned:
                problems.append(
                    f"{name}: SECURITY DEFINER {bool(definer)}, search_path pinned {pinned}; "
                    f"the model says {name in DEFINER} (a CREATE OR REPLACE resets both)"
                )
        for kind_name in KINDS:
            for priv, cols in privileges(kind_name).get(name, {}).items():
                missing = [c for c in cols or () if c not in (columns or [])]
                if missing:
                    problems.append(f"{name}: {kind_name}'s {priv} names missing {missing}")
    granted = {obj for k in KINDS for obj in privileges(k)}
    problems += [f"{n}: in the model, not in the schema" for n in OBJECTS if n not in found]
    problems += [
        f"{n}: granted to no kind and not OWNER_ONLY"
        for n in OBJECTS
        if n not in granted and n not in OWNER_ONLY
    ]
    problems += [f"{n}: OWNER_ONLY, yet granted" for n in OWNER_ONLY if n in granted]
    return problems
