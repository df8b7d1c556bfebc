"""Roles: the SQL functions run with their owner's rights; none is executable by PUBLIC.

PostgreSQL grants EXECUTE on every new function to PUBLIC, so until now any role of the
database that could reach the schema could call retry_job, cancel_job or prune_jobs
(with whatever table rights it had). From here no function of the schema is executable
by PUBLIC: ``pgqueue grant KIND ROLE`` gives EXECUTE back per role (pgqueue/roles.py
is the model of who may call what).

The functions a least-privilege role calls run as their owner (SECURITY DEFINER), so the
role needs no table rights for what they do: an operator retries, cancels, pauses and
prunes without UPDATE or DELETE on jobs; a producer enqueues from SQL and replaces a
queued job's arguments (``replace=True``) without UPDATE on jobs. Each has
``search_path = pg_catalog, pg_temp`` (a caller cannot shadow a table or an operator
with its own objects) and names everything it touches with the schema.

A later ``CREATE OR REPLACE FUNCTION`` of one of these resets SECURITY DEFINER and the
search_path unless it repeats them (it keeps the grants); a DROP + CREATE also gives
EXECUTE to PUBLIC again. tests/integration/test_roles_model.py catches both.

Revision ID: 0007
Revises: 0004
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import context, op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

#: The functions that run with their owner's rights (as of this revision).
DEFINER = (
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
)

DDL = """
-- Unique enqueue with replace=True (queries.sql job_insert_replacing calls it): a queued
-- or waiting holder of the key takes the new arguments (ON CONFLICT DO UPDATE; it
-- row-locks the holder until the enqueuing transaction ends); a running holder is left
-- alone (no row comes back and the caller looks it up). With unique_for, a holder that
-- finished less than that long ago is returned instead (the recent CTE of
-- job_insert_deduped: keep the two alike, tests/unit/test_validation.py compares them;
-- an unqualified name is a column, a parameter is qualified). A function running as its
-- owner, so that a producer replaces arguments this way only, without UPDATE on jobs.
-- plpgsql, not sql: its statement's plan is cached for the session; a sql function with
-- a SET clause is planned again on every call (measured: 1,100 replaces/s against 2,500
-- for the plain statement; as plpgsql 2,600/s).
CREATE FUNCTION {s}.enqueue_replacing(
    queue text,
    task text,
    args jsonb,
    kwargs jsonb,
    priority smallint,
    run_at timestamptz,
    max_attempts integer,
    dedupe_key text,
    group_key text DEFAULT NULL,
    unique_for float8 DEFAULT NULL
) RETURNS SETOF bigint LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH recent AS (
        SELECT id FROM {s}.all_jobs
        WHERE enqueue_replacing.unique_for IS NOT NULL
          AND dedupe_key = enqueue_replacing.dedupe_key
          AND state IN ('succeeded', 'failed', 'cancelled')
          AND finished_at > now() - make_interval(secs => enqueue_replacing.unique_for)
        ORDER BY finished_at DESC
        LIMIT 1
    ), upserted AS (
        INSERT INTO {s}.jobs AS j (queue, task, args, kwargs, priority, run_at,
                                   max_attempts, dedupe_key, group_key)
        SELECT enqueue_replacing.queue, enqueue_replacing.task, enqueue_replacing.args,
               enqueue_replacing.kwargs, enqueue_replacing.priority, enqueue_replacing.run_at,
               enqueue_replacing.max_attempts, enqueue_replacing.dedupe_key,
               enqueue_replacing.group_key
        WHERE NOT EXISTS (SELECT 1 FROM recent)
        ON CONFLICT (dedupe_key)
            WHERE dedupe_key IS NOT NULL AND state IN ('waiting', 'queued', 'running')
        DO UPDATE SET args = EXCLUDED.args, kwargs = EXCLUDED.kwargs
            WHERE j.state IN ('queued', 'waiting')
        RETURNING j.id
    )
    SELECT id FROM upserted UNION ALL SELECT id FROM recent;
END
$$;
"""

SECURE = "ALTER FUNCTION {s}.{name} SECURITY DEFINER SET search_path = pg_catalog, pg_temp;\n"

# Every function of the schema, also those of revisions this one does not know by name.
REVOKE = "REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA {s} FROM PUBLIC;\n"


def upgrade() -> None:
    schema = context.config.attributes["schema"]
    s = f'"{schema}"'
    op.execute(
        DDL.format(s=s) + "".join(SECURE.format(s=s, name=n) for n in DEFINER) + REVOKE.format(s=s)
    )


def downgrade() -> None:
    raise NotImplementedError("pgqueue migrations go forward only")
