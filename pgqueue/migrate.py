"""Schema migrations: upgrade to the newest revision, print the DDL, check the revision.

Alembic drives the revisions in ``pgqueue/migrations`` (inside the wheel); its version
table lives in the pgqueue schema. ``upgrade`` is idempotent and safe to run from many
processes at once (an advisory lock serializes them inside one transaction).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from .db import connect, first_line
from .errors import ConfigurationError, SchemaNotMigrated

#: The revision this pgqueue's code expects. tests/ check it is alembic's head.
HEAD_REVISION = "0006"


def _config(schema: str, **attributes: Any) -> Any:
    from alembic.config import Config

    cfg = Config()
    location = Path(__file__).resolve().parent / "migrations"
    cfg.set_main_option("script_location", str(location))
    cfg.attributes["schema"] = schema
    cfg.attributes.update(attributes)
    return cfg


def head_revision() -> str:
    """Alembic's head revision, read from the shipped scripts."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_config("pgqueue")).get_current_head()
    assert head is not None
    return head


def current_revision(dsn: str, schema: str) -> str | None:
    """The schema's revision, or None if it was never migrated."""
    with connect(dsn) as conn:
        return read_revision(conn, schema)


def read_revision(conn: Any, schema: str) -> str | None:
    """The revision, read on an open psycopg connection without failing its transaction."""
    from .sql import query

    row = conn.execute(query(schema, "schema_version_table_exists")).fetchone()
    if not row or not row[0]:
        return None
    row = conn.execute(query(schema, "schema_revision")).fetchone()
    return str(row[0]) if row else None


def check_revision(revision: str | None, schema: str) -> None:
    """Raise ``SchemaNotMigrated`` unless ``revision`` is the one this code expects."""
    if revision == HEAD_REVISION:
        return
    if revision is None:
        raise SchemaNotMigrated(
            f"schema {schema!r} is not set up in this database: run `pgqueue migrate`"
        )
    raise SchemaNotMigrated(
        f"schema {schema!r} is at revision {revision}, this pgqueue needs {HEAD_REVISION}: "
        "run `pgqueue migrate`"
    )


def upgrade(dsn: str, schema: str) -> tuple[str | None, str]:
    """Upgrade ``schema`` to the newest revision; return (revision before, revision after).

    Runs in one transaction: on any error nothing is changed and ``ConfigurationError``
    (or the database's own error) propagates.
    """
    import psycopg
    import sqlalchemy.exc
    from alembic import command
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    engine = create_engine(
        "postgresql+psycopg://",
        creator=lambda: psycopg.connect(dsn),
        poolclass=NullPool,
    )
    try:
        with engine.begin() as connection:
            # Read "before" under migrate's advisory lock (the one env.py takes; it nests in
            # one session), so of many concurrent runs exactly one reports the upgrade.
            connection.exec_driver_sql(
                "SELECT pg_advisory_xact_lock(hashtext(%(k)s))", {"k": f"pgqueue.migrate.{schema}"}
            )
            before = read_revision(connection.connection.driver_connection, schema)
            command.upgrade(_config(schema, connection=connection), "head")
    except psycopg.OperationalError as exc:
        raise ConfigurationError(f"cannot connect to PostgreSQL: {first_line(exc)}") from exc
    except sqlalchemy.exc.OperationalError as exc:  # the creator's psycopg error, wrapped
        cause = exc.orig if exc.orig is not None else exc
        raise ConfigurationError(f"cannot connect to PostgreSQL: {first_line(cause)}") from exc
    finally:
        engine.dispose()
    return before, HEAD_REVISION


def upgrade_sql(schema: str) -> str:
    """The DDL ``upgrade`` would run on an empty database, for a DBA to review and apply."""
    from alembic import command

    buffer = io.StringIO()
    cfg = _config(schema)
    cfg.output_buffer = buffer
    command.upgrade(cfg, "head", sql=True)
    return buffer.getvalue()
