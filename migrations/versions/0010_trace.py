"""Message headers: the W3C trace context (and whatever an enqueue hook adds) per job.

``headers``: a JSON object of strings written at enqueue by ``around_enqueue`` hooks
(``pgqueue.otel`` puts ``traceparent`` and ``tracestate`` there), NULL when there are
none, which is the common case and costs one bit of the row's null bitmap. The claim
returns it, so a worker continues the producer's trace; it moves with the job into
succeeded_jobs, and ``all_jobs`` shows it.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import context, op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

COLUMNS = (
    "id, queue, task, args, kwargs, state, priority, run_at, attempt, max_attempts, "
    "error_count, lost_count, lease_expires_at, worker_id, dedupe_key, errors, result, "
    "created_at, started_at, finished_at, cancel_requested_at, group_key, depends_on, "
    "progress, checkpoint"  # (0009's)
)

DDL = """
-- No CHECK on the shape: only pgqueue's hooks write it, and the worker reads it with
-- a tolerant parser (a bad value means no trace context, never a failed job).
ALTER TABLE {s}.jobs ADD COLUMN headers jsonb;
ALTER TABLE {s}.succeeded_jobs ADD COLUMN headers jsonb;
COMMENT ON COLUMN {s}.jobs.headers IS 'Message headers written at enqueue (W3C traceparent/tracestate, ...); NULL when none.';
-- The new column goes last: CREATE OR REPLACE VIEW may only append columns.
CREATE OR REPLACE VIEW {s}.all_jobs AS
SELECT {cols}, headers FROM {s}.jobs
UNION ALL
SELECT {cols}, headers FROM {s}.succeeded_jobs;

-- Every enqueue now names headers (NULL when no hook sets it): a role that may insert
-- jobs (a producer granted before this revision: INSERT on some columns) gets INSERT on
-- the new column too, or its enqueues would fail after the upgrade.
DO $grant$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT DISTINCT p.grantee FROM information_schema.column_privileges AS p
        WHERE p.table_schema = {lit} AND p.table_name = 'jobs' AND p.column_name = 'queue'
          AND p.privilege_type = 'INSERT'
          AND p.grantee <> (SELECT pg_get_userbyid(c.relowner) FROM pg_class AS c
                            WHERE c.oid = '{s}.jobs'::regclass)
    LOOP
        EXECUTE format('GRANT INSERT (headers) ON {s}.jobs TO %s',
                       CASE WHEN r.grantee = 'PUBLIC' THEN 'PUBLIC'
                            ELSE quote_ident(r.grantee) END);
    END LOOP;
END
$grant$;
"""


def upgrade() -> None:
    schema = context.config.attributes["schema"]
    literal = "'" + schema.replace("'", "''") + "'"
    op.execute(DDL.format(s=f'"{schema}"', cols=COLUMNS, lit=literal))


def downgrade() -> None:
    raise NotImplementedError("pgqueue migrations go forward only")
