"""Initial schema: jobs, workers, the NOTIFY trigger, the enqueue function, queue_stats.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import context, op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

DDL = """
CREATE TABLE {s}.jobs (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue            text        NOT NULL DEFAULT 'default',
    task             text        NOT NULL,
    args             jsonb       NOT NULL DEFAULT '[]',
    kwargs           jsonb       NOT NULL DEFAULT '{{}}',
    state            text        NOT NULL DEFAULT 'queued',
    priority         smallint    NOT NULL DEFAULT 0,
    run_at           timestamptz NOT NULL DEFAULT now(),
    attempt          integer     NOT NULL DEFAULT 0,
    max_attempts     integer     NOT NULL DEFAULT 20,
    error_count      integer     NOT NULL DEFAULT 0,
    lost_count       integer     NOT NULL DEFAULT 0,
    lease_expires_at timestamptz,
    worker_id        text,
    dedupe_key       text,
    errors           jsonb       NOT NULL DEFAULT '[]',
    result           jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    CONSTRAINT jobs_state_check
        CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    CONSTRAINT jobs_queue_check CHECK (queue ~ '^[A-Za-z_][A-Za-z0-9_.-]{{0,62}}$'),
    CONSTRAINT jobs_task_check CHECK (task ~ '^[A-Za-z_][A-Za-z0-9_.:-]{{0,199}}$'),
    CONSTRAINT jobs_args_check CHECK (jsonb_typeof(args) = 'array'),
    CONSTRAINT jobs_kwargs_check CHECK (jsonb_typeof(kwargs) = 'object'),
    CONSTRAINT jobs_max_attempts_check CHECK (max_attempts >= 1),
    CONSTRAINT jobs_attempt_check CHECK (attempt >= 0)
) WITH (fillfactor = 90);

COMMENT ON TABLE {s}.jobs IS 'pgqueue jobs: one row per job. state: queued (run_at may be in the future: scheduled), running (leased), succeeded, failed (dead letter), cancelled.';
COMMENT ON COLUMN {s}.jobs.attempt IS 'Claims so far; with id it is the fencing token of the current run.';
COMMENT ON COLUMN {s}.jobs.error_count IS 'Attempts that ended in an exception or timeout.';
COMMENT ON COLUMN {s}.jobs.lost_count IS 'Attempts whose worker died or froze (lease expired).';

-- The claim walks this index in ORDER BY order and stops at LIMIT.
CREATE INDEX jobs_claim_idx ON {s}.jobs (queue, priority DESC, run_at, id)
    WHERE state = 'queued';
-- The reaper finds expired leases without touching queued or finished rows.
CREATE INDEX jobs_lease_idx ON {s}.jobs (lease_expires_at) WHERE state = 'running';
-- At most one unfinished job per dedupe key.
CREATE UNIQUE INDEX jobs_dedupe_key_idx ON {s}.jobs (dedupe_key)
    WHERE dedupe_key IS NOT NULL AND state IN ('queued', 'running');
-- Pruning and listing finished jobs.
CREATE INDEX jobs_finished_idx ON {s}.jobs (finished_at)
    WHERE state IN ('succeeded', 'failed', 'cancelled');

-- One NOTIFY per queue per statement, payload the queue name and never job data.
-- Delivered on commit, dropped on rollback (PostgreSQL's own NOTIFY semantics).
CREATE FUNCTION {s}.jobs_notify_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{channel}', q.queue) FROM (SELECT DISTINCT queue FROM new_jobs) AS q;
    RETURN NULL;
END
$$;
CREATE TRIGGER jobs_notify_insert AFTER INSERT ON {s}.jobs
    REFERENCING NEW TABLE AS new_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION {s}.jobs_notify_insert();

CREATE TABLE {s}.workers (
    id                text        PRIMARY KEY,
    host              text        NOT NULL,
    pid               integer     NOT NULL,
    queues            text[]      NOT NULL,
    concurrency       integer     NOT NULL,
    started_at        timestamptz NOT NULL DEFAULT now(),
    last_heartbeat_at timestamptz NOT NULL DEFAULT now()
);

-- Enqueue from plain SQL or a trigger:
--   SELECT pgqueue.enqueue('send_email', '{{"to": "a@b.c"}}');
-- "arguments" is the keyword arguments (a JSON object) or the positional ones (an array).
-- Returns the new job's id, or the unfinished job that holds dedupe_key already.
CREATE FUNCTION {s}.enqueue(
    task text,
    arguments jsonb DEFAULT '{{}}',
    queue text DEFAULT 'default',
    priority integer DEFAULT 0,
    run_at timestamptz DEFAULT now(),
    max_attempts integer DEFAULT 20,
    dedupe_key text DEFAULT NULL
) RETURNS bigint LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    new_id bigint;
BEGIN
    IF jsonb_typeof(arguments) NOT IN ('object', 'array') THEN
        RAISE EXCEPTION 'pgqueue.enqueue: arguments must be a JSON object (keyword arguments) or array (positional), got %', jsonb_typeof(arguments)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO {s}.jobs AS j (task, args, kwargs, queue, priority, run_at, max_attempts, dedupe_key)
    VALUES (enqueue.task,
            CASE WHEN jsonb_typeof(arguments) = 'array' THEN arguments ELSE '[]'::jsonb END,
            CASE WHEN jsonb_typeof(arguments) = 'object' THEN arguments ELSE '{{}}'::jsonb END,
            enqueue.queue, enqueue.priority, enqueue.run_at, enqueue.max_attempts,
            enqueue.dedupe_key)
    ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL AND state IN ('queued', 'running')
    DO NOTHING
    RETURNING j.id INTO new_id;
    IF new_id IS NULL THEN
        SELECT j.id INTO new_id FROM {s}.jobs AS j
        WHERE j.dedupe_key = enqueue.dedupe_key AND j.state IN ('queued', 'running');
    END IF;
    RETURN new_id;
END
$$;

-- Per queue and state: how many jobs, and how old the oldest is (seconds since created).
-- 'scheduled' is a queued job whose run_at has not come yet.
CREATE VIEW {s}.queue_stats AS
SELECT queue,
       CASE WHEN state = 'queued' AND run_at > now() THEN 'scheduled' ELSE state END AS state,
       count(*) AS jobs,
       round(extract(epoch FROM now() - min(created_at))::numeric, 3) AS oldest_age_seconds
FROM {s}.jobs
GROUP BY 1, 2;
"""


def upgrade() -> None:
    schema = context.config.attributes["schema"]
    op.execute(DDL.format(s=f'"{schema}"', channel=f"{schema}_jobs"))


def downgrade() -> None:
    raise NotImplementedError("pgqueue migrations go forward only")
