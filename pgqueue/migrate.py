"""Schema migrations: upgrade to the newest revision, print the DDL, check the schema.

Alembic drives the revisions in the top-level ``migrations/`` (``pgqueue/migrations`` links
to it, so the wheel carries them). Its version
table is ``<schema>.pgqueue_version``: a name no other tool uses, so an application's own
alembic (``alembic_version``) never meets pgqueue's, whatever its search_path. ``upgrade``
is idempotent and safe to run from many processes at once (an advisory lock serializes
them inside one transaction).

Adopting a schema (``read_state``): a schema that does not exist or holds nothing is
fresh; one with ``pgqueue_version`` is pgqueue's; one an older pgqueue set up (its
revision in ``alembic_version`` next to pgqueue's own tables) is pgqueue's too, and
``upgrade`` renames that table in the same transaction; anything else holding objects
belongs to someone else, and every command refuses it, naming the objects.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import producer
from .db import connect, first_line, normalize_dsn, validate_schema
from .errors import ConfigurationError, SchemaNotMigrated
from .sql import query

#: The revision this pgqueue's code expects. tests/ check it is alembic's head.
HEAD_REVISION = "0010"
#: pgqueue's alembic version table, inside the pgqueue schema.
VERSION_TABLE = "pgqueue_version"
#: The revisions pgqueue recorded in ``<schema>.alembic_version`` before it had a table
#: name of its own; ``upgrade`` moves such a table to ``VERSION_TABLE``.
LEGACY_REVISIONS = frozenset({"0001", "0002", "0003", "0004"})


@dataclass(frozen=True)
class SchemaState:
    """What a schema holds, as far as pgqueue is concerned.

    ``exists``: the schema is there. ``revision``: pgqueue's revision (None: fresh or
    foreign). ``legacy``: that revision is in an older pgqueue's ``alembic_version``.
    ``foreign``: the objects of a schema pgqueue did not create (empty otherwise).
    """

    exists: bool
    revision: str | None = None
    legacy: bool = False
    foreign: tuple[str, ...] = ()


def _config(schema: str, **attributes: Any) -> Any:
    from alembic.config import Config

    cfg = Config()
    location = Path(__file__).resolve().parent / "migrations"
    cfg.set_main_option("script_location", str(location))
    cfg.attributes["schema"] = schema
    cfg.attributes.setdefault("version_table", VERSION_TABLE)
    cfg.attributes.update(attributes)
    return cfg


def head_revision() -> str:
    """Alembic's head revision, read from the shipped scripts."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_config("pgqueue")).get_current_head()
    assert head is not None
    return head


# -- what a schema holds ----------------------------------------------------------------------


def _revision_query(inspected: tuple[Any, ...]) -> str | None:
    _, version_table, legacy, _ = inspected
    if version_table:
        return "schema_revision"
    return "schema_legacy_revision" if legacy else None


def _state(inspected: tuple[Any, ...], revisions: list[tuple[Any, ...]]) -> SchemaState:
    present, version_table, legacy, objects = inspected
    names = tuple(str(n) for n in objects or ())
    if version_table:
        return SchemaState(True, str(revisions[0][0]) if revisions else None)
    if legacy and len(revisions) == 1 and str(revisions[0][0]) in LEGACY_REVISIONS:
        return SchemaState(True, str(revisions[0][0]), legacy=True)
    return SchemaState(bool(present), foreign=names)


def read_state(conn: Any, schema: str) -> SchemaState:
    """The schema's state, read on a caller's sync connection (psycopg or SQLAlchemy)
    without failing its transaction: catalog reads only, and a version table is read
    only once it is known to be there."""
    inspected = producer.run_sync(conn, query(schema, "schema_inspect"), {})[0]
    name = _revision_query(inspected)
    revisions = producer.run_sync(conn, query(schema, name), {}) if name else []
    return _state(inspected, revisions)


async def read_state_async(conn: Any, schema: str) -> SchemaState:
    """``read_state`` on an async connection."""
    inspected = (await producer.run_async(conn, query(schema, "schema_inspect"), {}))[0]
    name = _revision_query(inspected)
    revisions = await producer.run_async(conn, query(schema, name), {}) if name else []
    return _state(inspected, revisions)


def current_revision(dsn: str, schema: str) -> str | None:
    """The schema's pgqueue revision, or None if pgqueue never set it up."""
    with connect(dsn) as conn:
        return read_state(conn, schema).revision


def _foreign_error(state: SchemaState, schema: str) -> ConfigurationError:
    shown = ", ".join(state.foreign[:5])
    if len(state.foreign) > 5:
        shown += f" and {len(state.foreign) - 5} more"
    return ConfigurationError(
        f"schema {schema!r} holds objects pgqueue did not create ({shown}): choose another "
        "schema for pgqueue (--schema, PGQUEUE_SCHEMA or App(schema=...))"
    )


def _newer(revision: str) -> bool:
    return revision.isdigit() and HEAD_REVISION.isdigit() and int(revision) > int(HEAD_REVISION)


def check_state(state: SchemaState, schema: str) -> None:
    """Raise unless this code can use the schema as it is: ``SchemaNotMigrated`` when
    ``pgqueue migrate`` fixes it, ``ConfigurationError`` when it cannot (someone else's
    schema, or a revision newer than this pgqueue)."""
    if state.foreign:
        raise _foreign_error(state, schema)
    revision = state.revision
    if revision == HEAD_REVISION and not state.legacy:
        return
    if revision is None:
        raise SchemaNotMigrated(
            f"schema {schema!r} is not set up in this database: run `pgqueue migrate`"
        )
    if _newer(revision):
        raise ConfigurationError(
            f"schema {schema!r} is at revision {revision}, newer than this pgqueue "
            f"(which needs {HEAD_REVISION}): upgrade pgqueue"
        )
    if state.legacy:
        raise SchemaNotMigrated(
            f"schema {schema!r} was set up by an older pgqueue (revision {revision}, "
            "version table alembic_version): run `pgqueue migrate`"
        )
    raise SchemaNotMigrated(
        f"schema {schema!r} is at revision {revision}, this pgqueue needs {HEAD_REVISION}: "
        "run `pgqueue migrate`"
    )


# -- upgrade --------------------------------------------------------------------------------


def _failure(exc: BaseException, schema: str) -> str:
    """One line for a database error that stopped ``upgrade`` (nothing was changed)."""
    import psycopg.errors as pe

    line = first_line(exc)
    if isinstance(exc, pe.InsufficientPrivilege):
        return (
            f"migrate cannot set up schema {schema!r}: {line}; run it as a role that may "
            "create the schema and its tables (GRANT CREATE ON DATABASE ... TO that role, "
            "or make it the schema's owner), or have a DBA apply `pgqueue migrate --sql`"
        )
    if isinstance(exc, pe.LockNotAvailable):
        return (
            f"migrate gave up waiting for a lock in schema {schema!r} ({line}; lock_timeout): "
            "a long transaction holds one of its tables; nothing was changed, run it again "
            "when that transaction ends"
        )
    if isinstance(exc, pe.QueryCanceled):
        return (
            f"migrate of schema {schema!r} was cancelled ({line}); nothing was changed: run "
            "it again (raise statement_timeout for this role if it was the timeout)"
        )
    return f"migrate of schema {schema!r} failed, nothing was changed: {line}"


def upgrade(
    dsn: str, schema: str, *, notify: Callable[[str], None] | None = None
) -> tuple[str | None, str]:
    """Upgrade ``schema`` to the newest revision; return (revision before, revision after).

    Runs in one transaction of its own: on any error nothing is changed and
    ``ConfigurationError`` says why in one line (cannot connect, someone else's schema,
    ``public``, permission, lock timeout, ...). ``dsn`` may be a SQLAlchemy URL
    (``postgresql+psycopg://...``). An older pgqueue's version table is moved to
    ``pgqueue_version`` in the same transaction; ``notify`` (if given) is called with a
    line saying so. Safe to call from inside an application's own alembic run (its
    ``env.py`` or a revision): see ``upgrade_on`` to run in that run's transaction.
    """
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    schema = validate_schema(schema)
    raw = connect(normalize_dsn(dsn), autocommit=False)  # ConfigurationError naming the server
    engine = create_engine("postgresql+psycopg://", creator=lambda: raw, poolclass=NullPool)
    try:
        with _errors_explained(schema), engine.begin() as connection:
            before, moved = _upgrade(connection, schema)
    finally:
        engine.dispose()
        raw.close()
    if moved and notify is not None:
        notify(
            f"schema {schema!r}: moved an older pgqueue's version table "
            f"(alembic_version) to {VERSION_TABLE}"
        )
    return before, HEAD_REVISION


def upgrade_on(connection: Any, schema: str) -> tuple[str | None, str]:
    """``upgrade`` on a caller's SQLAlchemy ``Connection`` (PostgreSQL, psycopg 3), inside
    the transaction it is in, which the caller commits: an application's alembic runs
    pgqueue's revisions in its own transaction, from its ``env.py`` after
    ``context.run_migrations()`` or from one of its revisions
    (``upgrade_on(op.get_bind(), "pgqueue")``). pgqueue's revision is still kept in
    ``<schema>.pgqueue_version``, never in the application's ``alembic_version``.
    Raises ``ConfigurationError`` as ``upgrade`` does; the caller's transaction must then
    be rolled back (alembic does).
    """
    schema = validate_schema(schema)
    with _errors_explained(schema):
        before, _ = _upgrade(connection, schema)
    return before, HEAD_REVISION


def _upgrade(connection: Any, schema: str) -> tuple[str | None, bool]:
    """Bring ``schema`` to head on ``connection`` (in its transaction); (revision before,
    whether an older pgqueue's version table was moved)."""
    from alembic import command

    # Read the state under migrate's advisory lock (the one env.py takes; it nests in one
    # session), so of many concurrent runs exactly one reports the upgrade.
    connection.exec_driver_sql(
        "SELECT pg_advisory_xact_lock(hashtext(%(k)s))", {"k": f"pgqueue.migrate.{schema}"}
    )
    state = read_state(connection, schema)
    if state.foreign:
        raise _foreign_error(state, schema)
    if state.revision is not None and _newer(state.revision):
        check_state(state, schema)
    if state.legacy:
        producer.run_sync(connection, query(schema, "schema_legacy_version_table_move"), {})
        producer.run_sync(connection, query(schema, "schema_legacy_version_pkey_move"), {})
    cfg = _config(schema, connection=connection, create_schema=not state.exists)
    with _outer_alembic_kept():
        command.upgrade(cfg, "head")
    return state.revision, state.legacy


@contextlib.contextmanager
def _errors_explained(schema: str) -> Iterator[None]:
    """Database and alembic errors of an upgrade as one-line ``ConfigurationError``s."""
    import psycopg
    import sqlalchemy.exc
    from alembic.util.exc import CommandError

    try:
        yield
    except sqlalchemy.exc.DBAPIError as exc:
        raise ConfigurationError(_failure(exc.orig or exc, schema)) from exc
    except psycopg.Error as exc:
        raise ConfigurationError(_failure(exc, schema)) from exc
    except CommandError as exc:  # e.g. a revision alembic cannot find in pgqueue's scripts
        raise ConfigurationError(
            f"migrate of schema {schema!r} failed, nothing was changed: {first_line(exc)}"
        ) from exc


@contextlib.contextmanager
def _outer_alembic_kept() -> Iterator[None]:
    """Alembic keeps the running migration's context in the globals of ``alembic.context``
    and ``alembic.op`` and deletes them when a run ends. A pgqueue upgrade run from inside
    an application's own alembic run (its env.py or a revision) would delete the outer
    run's as well, which then fails (KeyError: 'config') as it ends; so they are saved
    here and put back."""
    import alembic.context
    import alembic.op

    saved = [(vars(m), dict(vars(m))) for m in (alembic.context, alembic.op)]
    try:
        yield
    finally:
        for namespace, before in saved:
            namespace.clear()
            namespace.update(before)


def upgrade_sql(schema: str) -> str:
    """The DDL ``upgrade`` would run on an empty database, for a DBA to review and apply."""
    from alembic import command

    buffer = io.StringIO()
    cfg = _config(validate_schema(schema))
    cfg.output_buffer = buffer
    with _outer_alembic_kept():
        command.upgrade(cfg, "head", sql=True)
    return buffer.getvalue()
