"""Progress and checkpoints of long jobs.

``progress`` (jsonb: ``done``, ``total``, ``message``, ``at``): what the running handler
last reported with ``ctx.progress()``; the worker keeps it in memory and the heartbeat
writes it, fenced, with the next lease renewal. ``running_jobs`` shows it. The last value
written stays on the job after it ends (a report made after the last beat is not
written: progress is for watching a running job).

``checkpoint`` (jsonb): the state a handler stored with ``ctx.checkpoint(state)`` (a
fenced write of its own, at once); the next attempt starts with it
(``ctx.checkpoint_state``). Its size is checked against the same 8 MiB ceiling as the
arguments (the table's hard limit; the App enforces its own ``max_payload_bytes``).

Both columns are nullable and default NULL: adding them rewrites nothing. succeeded_jobs
gets them too (the completion moves a job there with its progress and checkpoint), so
``all_jobs`` stays a plain UNION ALL; its new columns come last.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import context, op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# The columns of all_jobs before this revision (migration 0004's COLUMNS).
OLD_COLUMNS = (
    "id, queue, task, args, kwargs, state, priority, run_at, attempt, max_attempts, "
    "error_count, lost_count, lease_expires_at, worker_id, dedupe_key, errors, result, "
    "created_at, started_at, finished_at, cancel_requested_at, group_key, depends_on"
)

DDL = """
ALTER TABLE {s}.jobs ADD COLUMN progress jsonb, ADD COLUMN checkpoint jsonb;
ALTER TABLE {s}.succeeded_jobs ADD COLUMN progress jsonb, ADD COLUMN checkpoint jsonb;
-- The stored size (a look at the value's header): the heartbeat rewrites the row every
-- lease/3, and a check that printed a large checkpoint as text would pay for it each time.
ALTER TABLE {s}.jobs ADD CONSTRAINT jobs_checkpoint_size_check
    CHECK (checkpoint IS NULL OR pg_column_size(checkpoint) <= 8388608) NOT VALID;
ALTER TABLE {s}.jobs VALIDATE CONSTRAINT jobs_checkpoint_size_check;
COMMENT ON COLUMN {s}.jobs.progress IS 'What the running handler last reported (ctx.progress): done, total, message, at; written with the heartbeat.';
COMMENT ON COLUMN {s}.jobs.checkpoint IS 'State stored by ctx.checkpoint(); the next attempt starts with it (ctx.checkpoint_state).';

CREATE OR REPLACE VIEW {s}.all_jobs AS
SELECT {cols}, progress, checkpoint FROM {s}.jobs
UNION ALL
SELECT {cols}, progress, checkpoint FROM {s}.succeeded_jobs;

CREATE OR REPLACE VIEW {s}.running_jobs AS
SELECT id, queue, task, worker_id, attempt, max_attempts, started_at,
       round(extract(epoch FROM now() - started_at)::numeric, 3) AS run_seconds,
       round(extract(epoch FROM lease_expires_at - now())::numeric, 3) AS lease_left_seconds,
       cancel_requested_at IS NOT NULL AS cancel_requested,
       (progress ->> 'done')::float8 AS progress_done,
       (progress ->> 'total')::float8 AS progress_total,
       CASE WHEN (progress ->> 'total')::float8 > 0
            THEN round((100 * (progress ->> 'done')::float8
                        / (progress ->> 'total')::float8)::numeric, 1) END AS progress_percent,
       progress ->> 'message' AS progress_message,
       (progress ->> 'at')::timestamptz AS progress_at
FROM {s}.jobs
WHERE state = 'running';
"""


def upgrade() -> None:
    schema = context.config.attributes["schema"]
    op.execute(DDL.format(s=f'"{schema}"', cols=OLD_COLUMNS))


def downgrade() -> None:
    raise NotImplementedError("pgqueue migrations go forward only")
