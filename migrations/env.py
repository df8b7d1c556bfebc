"""Alembic environment: pgqueue calls it through ``pgqueue.migrate``, never ``alembic`` directly.

The version table is ``<schema>.pgqueue_version`` (``pgqueue.migrate.VERSION_TABLE``): a
name of its own inside the pgqueue schema, so it never meets the application's own
alembic history (``alembic_version``), whatever the search_path. Online runs take a
transaction-scoped advisory lock first, so two ``pgqueue migrate`` at once are safe: the
second waits, then finds nothing to do.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

config = context.config
schema: str = config.attributes["schema"]
version_table: str = config.attributes["version_table"]
# False when the schema exists already: CREATE SCHEMA IF NOT EXISTS still needs CREATE on
# the database, which the schema's owner may lack.
create_schema: bool = config.attributes.get("create_schema", True)
lock_key = f"pgqueue.migrate.{schema}"


def run_offline() -> None:
    context.configure(
        url="postgresql://",
        literal_binds=True,
        # "named" keeps '%' in the DDL (plpgsql RAISE placeholders) as it is; the default
        # pyformat style would print it doubled and the printed function would not compile.
        dialect_opts={"paramstyle": "named"},
        version_table=version_table,
        version_table_schema=schema,
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.execute(f"SELECT pg_advisory_xact_lock(hashtext('{lock_key}'))")
        context.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes["connection"]
    context.configure(
        connection=connection,
        version_table=version_table,
        version_table_schema=schema,
        transactional_ddl=True,
    )
    with context.begin_transaction():
        connection.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": lock_key})
        if create_schema:
            connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
