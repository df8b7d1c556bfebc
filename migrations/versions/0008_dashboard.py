"""Dashboard: delete_job(id), so that an operator deletes a finished job by id.

The dashboard (and ``pgqueue jobs delete``) delete single finished jobs: the operator
role changes jobs through SQL functions only (pgqueue/roles.py), and ``prune_jobs``
deletes by age, not by id. A job that has not finished is left alone (cancel it
first): deleting a running job under its worker, or a job others wait on, would make
the worker's fenced writes and the dependency checks see a job vanish.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import context, op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

DDL = """
-- Returns 'deleted', or the state of a job that was left (not finished), or NULL if there
-- is no such job. A succeeded job is in succeeded_jobs (or, written in place by a worker
-- from before 0004, in jobs).
CREATE FUNCTION {s}.delete_job(job_id bigint) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    gone text;
BEGIN
    DELETE FROM {s}.jobs
    WHERE id = job_id AND state IN ('succeeded', 'failed', 'cancelled')
    RETURNING 'deleted' INTO gone;
    IF gone IS NULL THEN
        DELETE FROM {s}.succeeded_jobs WHERE id = job_id RETURNING 'deleted' INTO gone;
    END IF;
    IF gone IS NOT NULL THEN
        RETURN gone;
    END IF;
    SELECT state INTO gone FROM {s}.all_jobs WHERE id = job_id;
    RETURN gone;
END
$$;
ALTER FUNCTION {s}.delete_job(bigint) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
REVOKE EXECUTE ON FUNCTION {s}.delete_job(bigint) FROM PUBLIC;
"""


def upgrade() -> None:
    schema = context.config.attributes["schema"]
    op.execute(DDL.format(s=f'"{schema}"'))


def downgrade() -> None:
    raise NotImplementedError("pgqueue migrations go forward only")
