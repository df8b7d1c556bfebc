"""Flow: dependencies, group keys, queue limits, periodic ticks, finished-job notices.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import context, op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

DDL = """
-- 'waiting': enqueued to run after other jobs (depends_on) that have not all succeeded.
ALTER TABLE {s}.jobs DROP CONSTRAINT jobs_state_check;
ALTER TABLE {s}.jobs ADD CONSTRAINT jobs_state_check
    CHECK (state IN ('waiting', 'queued', 'running', 'succeeded', 'failed', 'cancelled'));
ALTER TABLE {s}.jobs ADD COLUMN group_key text;
ALTER TABLE {s}.jobs ADD COLUMN depends_on bigint[];
ALTER TABLE {s}.jobs ADD CONSTRAINT jobs_group_key_check
    CHECK (length(group_key) BETWEEN 1 AND 200);
COMMENT ON COLUMN {s}.jobs.group_key IS 'Fairness: queued jobs with a group key are claimed round-robin across groups (a tenant, a customer), optionally capped per group (queues.max_running_per_group).';
COMMENT ON COLUMN {s}.jobs.depends_on IS 'Jobs that must succeed before this one runs (state waiting until then; cancelled if one fails or is cancelled).';

-- The claim index holds ungrouped jobs only; grouped ones have their own, ordered by
-- group first, so a claim can visit each group's head without reading a flood of one
-- group's jobs. Every queued job is in exactly one of the two (no extra index write).
DROP INDEX {s}.jobs_claim_idx;
CREATE INDEX jobs_claim_idx ON {s}.jobs (queue, priority DESC, run_at, id)
    WHERE state = 'queued' AND group_key IS NULL;
CREATE INDEX jobs_group_claim_idx ON {s}.jobs (queue, group_key, priority DESC, run_at, id)
    WHERE state = 'queued' AND group_key IS NOT NULL;
-- Per-group caps count a group's running jobs (grouped jobs only pay for this index).
CREATE INDEX jobs_group_running_idx ON {s}.jobs (queue, group_key)
    WHERE state = 'running' AND group_key IS NOT NULL;
-- Dependencies: which waiting jobs name a job that just finished, and all waiting jobs.
CREATE INDEX jobs_depends_on_idx ON {s}.jobs USING gin (depends_on) WHERE state = 'waiting';
CREATE INDEX jobs_waiting_idx ON {s}.jobs (id) WHERE state = 'waiting';
-- Unique jobs with a window: a recently finished job that holds a dedupe key.
CREATE INDEX jobs_dedupe_finished_idx ON {s}.jobs (dedupe_key, finished_at)
    WHERE dedupe_key IS NOT NULL AND state IN ('succeeded', 'failed', 'cancelled');
-- A waiting job holds its dedupe key too.
DROP INDEX {s}.jobs_dedupe_key_idx;
CREATE UNIQUE INDEX jobs_dedupe_key_idx ON {s}.jobs (dedupe_key)
    WHERE dedupe_key IS NOT NULL AND state IN ('waiting', 'queued', 'running');

-- Limits across the whole fleet, held exactly: a claim of a limited queue first locks its
-- row here (so claims of that queue take turns), then counts in a fresh snapshot.
ALTER TABLE {s}.queues
    ADD COLUMN max_running integer CONSTRAINT queues_max_running_check CHECK (max_running >= 1),
    ADD COLUMN max_running_per_group integer
        CONSTRAINT queues_max_running_per_group_check CHECK (max_running_per_group >= 1),
    ADD COLUMN rate_limit integer CONSTRAINT queues_rate_limit_check CHECK (rate_limit >= 1),
    ADD COLUMN rate_period float8
        CONSTRAINT queues_rate_period_check CHECK (rate_period > 0 AND rate_period <= 86400),
    ADD COLUMN rate_window_start timestamptz,
    ADD COLUMN rate_window_count integer NOT NULL DEFAULT 0,
    ADD COLUMN priority_aging float8
        CONSTRAINT queues_priority_aging_check CHECK (priority_aging > 0),
    ADD COLUMN priority_aged_at timestamptz,
    ADD CONSTRAINT queues_rate_check CHECK ((rate_limit IS NULL) = (rate_period IS NULL));
COMMENT ON COLUMN {s}.queues.max_running IS 'At most this many jobs of the queue running at once over all workers.';
COMMENT ON COLUMN {s}.queues.max_running_per_group IS 'At most this many jobs of one group_key running at once.';
COMMENT ON COLUMN {s}.queues.rate_limit IS 'At most rate_limit claims per rate_period seconds (windows aligned to the epoch).';
COMMENT ON COLUMN {s}.queues.priority_aging IS 'Every this many seconds, due jobs waiting behind higher-priority work move up one priority step.';

-- Periodic jobs: the last tick enqueued per schedule. The scheduler moves last_tick with
-- a compare-and-set in the transaction that inserts the tick's job: exactly one job per
-- tick however many workers race.
CREATE TABLE {s}.periodic (
    name       text PRIMARY KEY,
    schedule   text        NOT NULL,
    last_tick  timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Enqueue from plain SQL or a trigger (now with group_key and depends_on):
--   SELECT pgqueue.enqueue('summarize', '{{"run": 7}}', depends_on => ARRAY[41, 42]);
DROP FUNCTION {s}.enqueue(text, jsonb, text, integer, timestamptz, integer, text);
CREATE FUNCTION {s}.enqueue(
    task text,
    arguments jsonb DEFAULT '{{}}',
    queue text DEFAULT 'default',
    priority integer DEFAULT 0,
    run_at timestamptz DEFAULT now(),
    max_attempts integer DEFAULT 20,
    dedupe_key text DEFAULT NULL,
    group_key text DEFAULT NULL,
    depends_on bigint[] DEFAULT NULL
) RETURNS bigint LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    new_id bigint;
    first_state text := {s}.dependency_state(depends_on);
BEGIN
    IF arguments IS NULL OR jsonb_typeof(arguments) NOT IN ('object', 'array') THEN
        RAISE EXCEPTION 'enqueue: arguments must be a JSON object (keyword arguments) or array (positional), got %', coalesce(jsonb_typeof(arguments), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO {s}.jobs AS j (task, args, kwargs, queue, priority, run_at, max_attempts,
                               dedupe_key, group_key, depends_on, state, finished_at)
    VALUES (enqueue.task,
            CASE WHEN jsonb_typeof(arguments) = 'array' THEN arguments ELSE '[]'::jsonb END,
            CASE WHEN jsonb_typeof(arguments) = 'object' THEN arguments ELSE '{{}}'::jsonb END,
            enqueue.queue, enqueue.priority, enqueue.run_at, enqueue.max_attempts,
            enqueue.dedupe_key, enqueue.group_key, nullif(enqueue.depends_on, '{{}}'),
            first_state, CASE WHEN first_state = 'cancelled' THEN now() END)
    ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL AND state IN ('waiting', 'queued', 'running')
    DO NOTHING
    RETURNING j.id INTO new_id;
    IF new_id IS NULL THEN
        SELECT j.id INTO new_id FROM {s}.jobs AS j
        WHERE j.dedupe_key = enqueue.dedupe_key AND j.state IN ('waiting', 'queued', 'running');
    END IF;
    RETURN new_id;
END
$$;

-- The state a new job starts in, given the jobs it depends on: 'queued' if there are none
-- or all succeeded, 'cancelled' if one failed or was cancelled, else 'waiting'. Raises if
-- a dependency does not exist (a typo, or a job already pruned: it must not wait forever).
-- With strict false (retry_job), and in resolve_dependents, a dependency that has been
-- pruned meanwhile counts as succeeded.
CREATE FUNCTION {s}.dependency_state(deps bigint[], strict boolean DEFAULT true)
RETURNS text LANGUAGE plpgsql STABLE AS $$
DECLARE
    found bigint;
    unfinished bigint;
    doomed bigint;
BEGIN
    IF deps IS NULL OR cardinality(deps) = 0 THEN
        RETURN 'queued';
    END IF;
    SELECT count(*), count(*) FILTER (WHERE state IN ('waiting', 'queued', 'running')),
           count(*) FILTER (WHERE state IN ('failed', 'cancelled'))
    INTO found, unfinished, doomed
    FROM {s}.jobs WHERE id = ANY(deps);
    IF strict AND found < (SELECT count(DISTINCT d) FROM unnest(deps) AS d) THEN
        RAISE EXCEPTION 'depends_on names a job that does not exist: %', (
            SELECT min(d) FROM unnest(deps) AS d
            WHERE NOT EXISTS (SELECT 1 FROM {s}.jobs WHERE id = d))
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN CASE WHEN doomed > 0 THEN 'cancelled' WHEN unfinished > 0 THEN 'waiting'
                ELSE 'queued' END;
END
$$;

-- Waiting jobs whose dependencies all succeeded become queued (their workers are
-- notified); those with a dependency that failed or was cancelled are cancelled, and so
-- on down the chain. Called after the commit that finished the given jobs (so a job whose
-- two parents finished at the same moment is seen ready by the later one), and by the
-- maintenance sweep with NULL (every waiting job). Returns how many jobs moved.
CREATE FUNCTION {s}.resolve_dependents(finished bigint[] DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    total bigint := 0;
    moved bigint;
    ids bigint[] := finished;
    doomed_ids bigint[];
BEGIN
    IF ids IS NULL THEN  -- the sweep: every waiting job's dependencies
        SELECT array_agg(DISTINCT d) INTO ids
        FROM {s}.jobs AS w, unnest(w.depends_on) AS d WHERE w.state = 'waiting';
        IF ids IS NULL THEN
            RETURN 0;
        END IF;
    END IF;
    LOOP
        -- "depends_on && ids" alone (no "ids IS NULL OR"), so even a generic plan probes
        -- jobs_depends_on_idx instead of reading every waiting job
        WITH cand AS (
            SELECT w.id,
                   EXISTS (SELECT 1 FROM {s}.jobs AS d WHERE d.id = ANY(w.depends_on)
                           AND d.state IN ('failed', 'cancelled')) AS doomed,
                   NOT EXISTS (SELECT 1 FROM {s}.jobs AS d WHERE d.id = ANY(w.depends_on)
                               AND d.state <> 'succeeded') AS ready
            FROM {s}.jobs AS w
            WHERE w.state = 'waiting' AND w.depends_on && ids
            ORDER BY w.id
            FOR UPDATE OF w
        ), changed AS (
            UPDATE {s}.jobs AS j
            SET state = CASE WHEN cand.doomed THEN 'cancelled' ELSE 'queued' END,
                finished_at = CASE WHEN cand.doomed THEN now() END,
                run_at = greatest(j.run_at, now()),
                errors = CASE WHEN cand.doomed THEN j.errors || jsonb_build_array(
                    jsonb_build_object('attempt', j.attempt, 'kind', 'dependency', 'at', now(),
                                       'message', 'a job it depends on failed or was cancelled'))
                    ELSE j.errors END
            FROM cand
            WHERE j.id = cand.id AND (cand.doomed OR cand.ready)
            RETURNING j.id, j.queue, j.state
        ), told AS (
            SELECT id, state,
                   CASE WHEN state = 'queued' THEN pg_notify('{channel}', queue)
                        ELSE pg_notify('{done_channel}', id::text) END
            FROM changed
        )
        SELECT count(*), array_agg(id) FILTER (WHERE state = 'cancelled')
        INTO moved, doomed_ids FROM told;
        total := total + moved;
        EXIT WHEN doomed_ids IS NULL;
        ids := doomed_ids;  -- their own dependents are cancelled next
    END LOOP;
    RETURN total;
END
$$;

-- cancel_job as before, and a queued or waiting job that is cancelled at once tells
-- whoever waits for its result ({done_channel}, payload the id).
CREATE OR REPLACE FUNCTION {s}.cancel_job(job_id bigint) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    new_state text;
BEGIN
    UPDATE {s}.jobs SET state = 'cancelled', finished_at = now()
    WHERE id = job_id AND state IN ('queued', 'waiting')
    RETURNING 'cancelled' INTO new_state;
    IF new_state IS NOT NULL THEN
        PERFORM pg_notify('{done_channel}', job_id::text);
        PERFORM {s}.resolve_dependents(ARRAY[job_id]);
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

-- retry_job: a retried job's dedupe key must not be held by a waiting job either, and a
-- job with dependencies goes back to what they say (waiting, or queued if all succeeded;
-- still cancelled-worthy ones leave it 'cancelled', so it is not retried: false).
CREATE OR REPLACE FUNCTION {s}.retry_job(job_id bigint) RETURNS boolean LANGUAGE sql AS $$
    WITH retried AS (
        UPDATE {s}.jobs AS j
        SET state = CASE WHEN j.depends_on IS NULL THEN 'queued'
                         ELSE {s}.dependency_state(j.depends_on, false) END,
            run_at = now(), error_count = 0, lost_count = 0,
            finished_at = NULL, cancel_requested_at = NULL, worker_id = NULL
        WHERE j.id = job_id AND j.state IN ('failed', 'cancelled')
          AND NOT EXISTS (SELECT 1 FROM {s}.jobs AS o
                          WHERE o.dedupe_key = j.dedupe_key AND o.id <> j.id
                            AND o.state IN ('waiting', 'queued', 'running'))
          AND (j.depends_on IS NULL OR {s}.dependency_state(j.depends_on, false) <> 'cancelled')
        RETURNING j.queue, j.state
    )
    SELECT count(CASE WHEN state = 'queued' THEN pg_notify('{channel}', queue) END
                 ) + count(*) FILTER (WHERE state = 'waiting') > 0
    FROM retried
$$;

-- Set (or with NULL clear) a queue's limits; creates its row if needed.
CREATE FUNCTION {s}.set_queue_limits(
    queue_name text,
    max_running integer DEFAULT NULL,
    max_running_per_group integer DEFAULT NULL,
    rate_limit integer DEFAULT NULL,
    rate_period float8 DEFAULT NULL,
    priority_aging float8 DEFAULT NULL
) RETURNS void LANGUAGE sql AS $$
    INSERT INTO {s}.queues AS q (name, max_running, max_running_per_group, rate_limit,
                                 rate_period, priority_aging)
    VALUES (queue_name, max_running, max_running_per_group, rate_limit, rate_period,
            priority_aging)
    ON CONFLICT (name) DO UPDATE
        SET max_running = EXCLUDED.max_running,
            max_running_per_group = EXCLUDED.max_running_per_group,
            rate_limit = EXCLUDED.rate_limit, rate_period = EXCLUDED.rate_period,
            rate_window_start = NULL, rate_window_count = 0,
            priority_aging = EXCLUDED.priority_aging, updated_at = now()
$$;

-- queue_stats: waiting jobs and the queue's limits too. Unfinished states are counted
-- through their partial indexes and the last minute's finished jobs through
-- jobs_finished_idx, so the view stays cheap however long the finished history is.
DROP VIEW {s}.queue_stats;
CREATE VIEW {s}.queue_stats AS
WITH unfinished AS (
    SELECT queue,
           count(*) FILTER (WHERE state = 'queued' AND run_at <= now()) AS queued,
           count(*) FILTER (WHERE state = 'queued' AND run_at > now()) AS scheduled,
           count(*) FILTER (WHERE state = 'waiting') AS waiting,
           count(*) FILTER (WHERE state = 'running') AS running,
           round(extract(epoch FROM now() - min(run_at)
                 FILTER (WHERE state = 'queued' AND run_at <= now()))::numeric, 3)
               AS oldest_queued_age_seconds
    FROM {s}.jobs
    WHERE state IN ('waiting', 'queued', 'running')
    GROUP BY queue
), failed AS (
    SELECT queue, count(*) AS failed FROM {s}.jobs WHERE state = 'failed' GROUP BY queue
), recent AS (
    SELECT queue, count(*) AS finished_last_minute FROM {s}.jobs
    WHERE state IN ('succeeded', 'failed', 'cancelled')
      AND finished_at > now() - interval '1 minute'
    GROUP BY queue
), names AS (
    SELECT queue FROM unfinished UNION SELECT queue FROM failed
    UNION SELECT queue FROM recent UNION SELECT name FROM {s}.queues
)
SELECT n.queue,
       coalesce(u.queued, 0) AS queued,
       coalesce(u.scheduled, 0) AS scheduled,
       coalesce(u.running, 0) AS running,
       coalesce(f.failed, 0) AS failed,
       u.oldest_queued_age_seconds,
       coalesce(r.finished_last_minute, 0) AS finished_last_minute,
       q.paused_at IS NOT NULL AS paused,
       coalesce(u.waiting, 0) AS waiting,
       q.max_running, q.max_running_per_group, q.rate_limit, q.rate_period, q.priority_aging
FROM names AS n
LEFT JOIN unfinished AS u ON u.queue = n.queue
LEFT JOIN failed AS f ON f.queue = n.queue
LEFT JOIN recent AS r ON r.queue = n.queue
LEFT JOIN {s}.queues AS q ON q.name = n.queue;
"""


def upgrade() -> None:
    schema = context.config.attributes["schema"]
    op.execute(
        DDL.format(
            s=f'"{schema}"',
            channel=f"{schema}_jobs",
            cancel_channel=f"{schema}_cancel",
            done_channel=f"{schema}_done",
        )
    )


def downgrade() -> None:
    raise NotImplementedError("pgqueue migrations go forward only")
