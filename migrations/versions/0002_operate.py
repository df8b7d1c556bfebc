"""Operate: paused queues, cancellation requests, the operator views and functions.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import context, op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

DDL = """
-- A queue is paused while it has a row here with paused_at set. Jobs still go in;
-- the claim skips the queue until it is resumed.
CREATE TABLE {s}.queues (
    name       text PRIMARY KEY
        CONSTRAINT queues_name_check
        CHECK (length(name) <= 63 AND name ~ '^[A-Za-z_][A-Za-z0-9_.-]*$'),
    paused_at  timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Set when cancel_job() asks the worker running the job to stop.
ALTER TABLE {s}.jobs ADD COLUMN cancel_requested_at timestamptz;

-- Per queue: what is waiting, running and failed, how old the oldest due job is, what
-- finished in the last minute, and whether the queue is paused.
DROP VIEW {s}.queue_stats;
CREATE VIEW {s}.queue_stats AS
WITH per_queue AS (
    SELECT queue,
           count(*) FILTER (WHERE state = 'queued' AND run_at <= now()) AS queued,
           count(*) FILTER (WHERE state = 'queued' AND run_at > now()) AS scheduled,
           count(*) FILTER (WHERE state = 'running') AS running,
           count(*) FILTER (WHERE state = 'failed') AS failed,
           round(extract(epoch FROM now() - min(run_at)
                 FILTER (WHERE state = 'queued' AND run_at <= now()))::numeric, 3)
               AS oldest_queued_age_seconds,
           count(*) FILTER (WHERE state IN ('succeeded', 'failed', 'cancelled')
                            AND finished_at > now() - interval '1 minute')
               AS finished_last_minute
    FROM {s}.jobs
    GROUP BY queue
)
SELECT coalesce(p.queue, q.name) AS queue,
       coalesce(p.queued, 0) AS queued,
       coalesce(p.scheduled, 0) AS scheduled,
       coalesce(p.running, 0) AS running,
       coalesce(p.failed, 0) AS failed,
       p.oldest_queued_age_seconds,
       coalesce(p.finished_last_minute, 0) AS finished_last_minute,
       q.paused_at IS NOT NULL AS paused
FROM per_queue AS p
FULL JOIN {s}.queues AS q ON q.name = p.queue;

CREATE VIEW {s}.running_jobs AS
SELECT id, queue, task, worker_id, attempt, max_attempts, started_at,
       round(extract(epoch FROM now() - started_at)::numeric, 3) AS run_seconds,
       round(extract(epoch FROM lease_expires_at - now())::numeric, 3) AS lease_left_seconds,
       cancel_requested_at IS NOT NULL AS cancel_requested
FROM {s}.jobs
WHERE state = 'running';

CREATE VIEW {s}.dead_jobs AS
SELECT id, queue, task, attempt, error_count, lost_count, finished_at,
       errors -> -1 ->> 'kind' AS last_error_kind,
       errors -> -1 ->> 'message' AS last_error
FROM {s}.jobs
WHERE state = 'failed';

-- Back to queued: a failed (dead-letter) or cancelled job gets its attempts back.
-- Returns false when the job is not failed/cancelled (or does not exist), or when its
-- dedupe key is held by another unfinished job.
CREATE FUNCTION {s}.retry_job(job_id bigint) RETURNS boolean LANGUAGE sql AS $$
    WITH retried AS (
        UPDATE {s}.jobs AS j
        SET state = 'queued', run_at = now(), error_count = 0, lost_count = 0,
            finished_at = NULL, cancel_requested_at = NULL, worker_id = NULL
        WHERE j.id = job_id AND j.state IN ('failed', 'cancelled')
          AND NOT EXISTS (SELECT 1 FROM {s}.jobs AS o
                          WHERE o.dedupe_key = j.dedupe_key AND o.id <> j.id
                            AND o.state IN ('queued', 'running'))
        RETURNING j.queue
    )
    SELECT count(pg_notify('{channel}', queue)) > 0 FROM retried
$$;

-- Every failed job, optionally of one queue and/or task; returns how many were retried.
CREATE FUNCTION {s}.retry_failed(queue_name text DEFAULT NULL, task_name text DEFAULT NULL)
RETURNS bigint LANGUAGE sql AS $$
    SELECT count(*) FILTER (WHERE {s}.retry_job(id)) FROM {s}.jobs
    WHERE state = 'failed'
      AND (queue_name IS NULL OR queue = queue_name)
      AND (task_name IS NULL OR task = task_name)
$$;

-- A queued job is cancelled at once; a running one is asked to stop (its worker hears
-- it on the {cancel_channel} channel, or at its next heartbeat) and ends 'cancelled'.
-- Returns 'cancelled', 'cancelling', or the state of a job that had already finished;
-- NULL if there is no such job.
CREATE FUNCTION {s}.cancel_job(job_id bigint) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    new_state text;
BEGIN
    UPDATE {s}.jobs SET state = 'cancelled', finished_at = now()
    WHERE id = job_id AND state = 'queued'
    RETURNING 'cancelled' INTO new_state;
    IF new_state IS NOT NULL THEN
        RETURN new_state;
    END IF;
    UPDATE {s}.jobs SET cancel_requested_at = coalesce(cancel_requested_at, now())
    WHERE id = job_id AND state = 'running'
    RETURNING 'cancelling' INTO new_state;
    IF new_state IS NOT NULL THEN
        PERFORM pg_notify('{cancel_channel}', job_id::text);
        RETURN new_state;
    END IF;
    SELECT state INTO new_state FROM {s}.jobs WHERE id = job_id;
    RETURN new_state;
END
$$;

CREATE FUNCTION {s}.pause_queue(queue_name text) RETURNS void LANGUAGE sql AS $$
    INSERT INTO {s}.queues (name, paused_at) VALUES (queue_name, now())
    ON CONFLICT (name) DO UPDATE
        SET paused_at = coalesce({s}.queues.paused_at, now()), updated_at = now()
$$;

-- Returns false if the queue was not paused. Wakes the workers of the queue.
CREATE FUNCTION {s}.resume_queue(queue_name text) RETURNS boolean LANGUAGE sql AS $$
    WITH resumed AS (
        UPDATE {s}.queues SET paused_at = NULL, updated_at = now()
        WHERE name = queue_name AND paused_at IS NOT NULL
        RETURNING name
    )
    SELECT count(pg_notify('{channel}', name)) > 0 FROM resumed
$$;

-- Deletes finished jobs (of the given states) that finished more than older_than ago.
CREATE FUNCTION {s}.prune_jobs(
    older_than interval,
    states text[] DEFAULT ARRAY['succeeded', 'failed', 'cancelled']
) RETURNS bigint LANGUAGE sql AS $$
    WITH gone AS (
        DELETE FROM {s}.jobs
        WHERE state = ANY(states) AND state IN ('succeeded', 'failed', 'cancelled')
          AND finished_at < now() - older_than
        RETURNING 1
    )
    SELECT count(*) FROM gone
$$;
"""


def upgrade() -> None:
    schema = context.config.attributes["schema"]
    op.execute(
        DDL.format(s=f'"{schema}"', channel=f"{schema}_jobs", cancel_channel=f"{schema}_cancel")
    )


def downgrade() -> None:
    raise NotImplementedError("pgqueue migrations go forward only")
