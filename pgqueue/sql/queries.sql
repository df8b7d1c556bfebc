-- Every statement pgqueue runs. One place, named table-first.
-- Placeholders: {schema} (quoted schema name), {channel} (NOTIFY channel), %(x)s (bound).
-- Fencing: every write after a claim matches id AND attempt AND worker_id AND
-- state = 'running'. The worker id makes the token unique even if a claim's commit is
-- lost in a server crash (--fast-claims) and a later claim reuses the attempt number.
-- "attempt" counts claims and is the fencing token; error_count and lost_count count
-- what used an attempt up (a shutdown release uses none).

-- name: schema_version_table_exists
-- to_regclass keeps the check safe inside a caller's transaction: a missing table is
-- NULL, not an error that would abort their transaction.
SELECT to_regclass('{schema}.alembic_version') IS NOT NULL AS present;

-- name: schema_revision
SELECT version_num FROM {schema}.alembic_version;

-- name: job_insert
-- The common case, no dedupe key: a plain INSERT (ON CONFLICT's speculative insertion
-- costs more per row, so it is used only when a key is given).
INSERT INTO {schema}.jobs (queue, task, args, kwargs, priority, run_at, max_attempts)
VALUES (%(queue)s, %(task)s, %(args)s::jsonb, %(kwargs)s::jsonb, %(priority)s,
        COALESCE(%(run_at)s::timestamptz, now() + make_interval(secs => %(delay)s::float8)),
        %(max_attempts)s)
RETURNING id;

-- name: job_insert_deduped
-- ON CONFLICT targets the partial unique index on unfinished dedupe keys; a row that
-- loses the race returns nothing and the caller looks the existing job up.
INSERT INTO {schema}.jobs (queue, task, args, kwargs, priority, run_at, max_attempts, dedupe_key)
VALUES (%(queue)s, %(task)s, %(args)s::jsonb, %(kwargs)s::jsonb, %(priority)s,
        COALESCE(%(run_at)s::timestamptz, now() + make_interval(secs => %(delay)s::float8)),
        %(max_attempts)s, %(dedupe_key)s)
ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL AND state IN ('queued', 'running')
DO NOTHING
RETURNING id;

-- name: job_find_unfinished_by_dedupe_key
SELECT id FROM {schema}.jobs
WHERE dedupe_key = %(dedupe_key)s AND state IN ('queued', 'running');

-- name: job_insert_many
-- One round trip for any number of jobs: the batch travels as one jsonb array.
-- RETURNING follows the input order; jobs skipped by a dedupe key are left out.
INSERT INTO {schema}.jobs (queue, task, args, kwargs, priority, run_at, max_attempts, dedupe_key)
SELECT j.queue, j.task, j.args, j.kwargs, j.priority,
       COALESCE(j.run_at, now() + make_interval(secs => j.delay)), j.max_attempts, j.dedupe_key
FROM ROWS FROM (jsonb_to_recordset(%(jobs)s::jsonb)
         AS (queue text, task text, args jsonb, kwargs jsonb, priority smallint,
             run_at timestamptz, delay float8, max_attempts integer, dedupe_key text))
     WITH ORDINALITY AS j(queue, task, args, kwargs, priority, run_at, delay,
                          max_attempts, dedupe_key, ord)
ORDER BY j.ord
ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL AND state IN ('queued', 'running')
DO NOTHING
RETURNING id;

-- name: job_id_reserve
-- Ids for a COPY batch, taken from the identity's sequence in one round trip, so
-- enqueue_many can return them in input order (COPY itself returns nothing).
-- The sequence is named as a literal: pg_get_serial_sequence() per row cost 5x more.
SELECT nextval('{schema}.jobs_id_seq'::regclass)
FROM generate_series(1, %(n)s);

-- name: job_copy
-- The bulk fast path (no dedupe keys, due now): run_at and created_at take now().
-- The statement-level NOTIFY trigger fires for COPY as for INSERT.
COPY {schema}.jobs (id, queue, task, args, kwargs, priority, max_attempts) FROM STDIN;

-- name: job_get
SELECT id, queue, task, args, kwargs, state, priority, run_at, attempt, max_attempts,
       error_count, lost_count, lease_expires_at, worker_id, dedupe_key, errors, result,
       created_at, started_at, finished_at, cancel_requested_at, group_key, depends_on
FROM {schema}.jobs WHERE id = %(id)s;

-- name: job_claim_batch
-- SKIP LOCKED lets many workers claim at once without waiting on each other.
-- One LATERAL subquery per queue: with "queue = ANY(array)" PostgreSQL cannot return
-- rows in index order and would read and sort every queued job. Per queue, the scan
-- walks jobs_claim_idx (queue, priority DESC, run_at, id) WHERE state = 'queued' in
-- ORDER BY order and stops at LIMIT (tests/integration/test_explain.py keeps it so).
-- With several queues up to LIMIT rows per queue are locked and the best LIMIT kept;
-- the others are unlocked when the statement ends.
WITH picked AS (
    SELECT c.id
    FROM (
        -- paused queues are skipped (the queues table is tiny; this is one lookup each)
        SELECT u.name FROM unnest(%(queues)s::text[]) AS u(name)
        WHERE NOT EXISTS (SELECT 1 FROM {schema}.queues AS p
                          WHERE p.name = u.name AND p.paused_at IS NOT NULL)
    ) AS q
    CROSS JOIN LATERAL (
        SELECT id, priority, run_at FROM {schema}.jobs
        WHERE state = 'queued' AND group_key IS NULL AND queue = q.name AND run_at <= now()
        ORDER BY priority DESC, run_at, id
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ) AS c
    ORDER BY c.priority DESC, c.run_at, c.id
    LIMIT %(limit)s
)
UPDATE {schema}.jobs AS j
SET state = 'running', attempt = j.attempt + 1, worker_id = %(worker_id)s,
    started_at = now(), lease_expires_at = now() + make_interval(secs => %(lease)s::float8)
WHERE j.id = ANY(ARRAY(SELECT id FROM picked))  -- a pkey lookup in any plan, generic too
RETURNING j.id, j.queue, j.task, j.args::text, j.kwargs::text, j.attempt, j.max_attempts,
          j.error_count, j.lost_count, j.priority;

-- name: job_seconds_to_next
-- Asked only by an idle worker: seconds until the earliest queued job of its queues is
-- due (NULL if none), measured on the server's clock so worker clocks do not matter.
-- Paused queues do not count (their due jobs would make the worker think it is late).
SELECT EXTRACT(EPOCH FROM min(run_at) - now())::float8 AS seconds FROM {schema}.jobs
WHERE state = 'queued'
  AND queue = ANY(ARRAY(
      SELECT u.name FROM unnest(%(queues)s::text[]) AS u(name)
      WHERE NOT EXISTS (SELECT 1 FROM {schema}.queues AS p
                        WHERE p.name = u.name AND p.paused_at IS NOT NULL)));

-- name: job_complete_fenced
-- Batched completion. A row that does not match (id, attempt, worker, running) is a job
-- whose lease was lost: it is left alone and missing from RETURNING.
-- Rows are locked in id order first (the heartbeat does the same), so a completion and
-- a heartbeat touching the same jobs cannot deadlock. "id = ANY(ids)" keeps the lookup
-- on the primary key (a join with the decoded batch got merge-joined over the whole
-- index).
WITH mine AS (
    SELECT j.id, j.attempt FROM {schema}.jobs AS j
    WHERE j.id = ANY(%(ids)s::bigint[]) AND j.worker_id = %(worker_id)s
      AND j.state = 'running'
    ORDER BY j.id
    FOR UPDATE OF j
), d AS (
    SELECT * FROM jsonb_to_recordset(%(done)s::jsonb) AS d(id bigint, attempt integer, result jsonb)
)
UPDATE {schema}.jobs AS j
SET state = 'succeeded', finished_at = now(), result = d.result, lease_expires_at = NULL
FROM mine JOIN d ON d.id = mine.id AND d.attempt = mine.attempt
WHERE j.id = mine.id
RETURNING j.id;

-- name: job_fail_fenced
-- One failed attempt: back to queued after the backoff, or to failed (the dead letter)
-- when the attempts are used up or the error is final.
UPDATE {schema}.jobs
SET error_count = error_count + 1,
    state = CASE WHEN %(final)s OR error_count + lost_count + 1 >= max_attempts
                 THEN 'failed' ELSE 'queued' END,
    run_at = CASE WHEN %(final)s OR error_count + lost_count + 1 >= max_attempts
                  THEN run_at ELSE now() + make_interval(secs => %(backoff)s::float8) END,
    finished_at = CASE WHEN %(final)s OR error_count + lost_count + 1 >= max_attempts
                       THEN now() END,
    errors = errors || jsonb_build_array(%(error)s::jsonb || jsonb_build_object('at', now())),
    lease_expires_at = NULL, worker_id = NULL
WHERE id = %(id)s AND attempt = %(attempt)s AND worker_id = %(worker_id)s
  AND state = 'running'
RETURNING state, run_at;

-- name: job_heartbeat_fenced
-- Renews every lease a worker holds in one statement; ids missing from RETURNING were
-- lost. GREATEST keeps a lease a handler extended on purpose from being shortened.
-- Locks in id order, like job_complete_fenced (no deadlock between the two), and skips
-- rows someone else holds locked (an operator's open UPDATE): one such row must not
-- stall every other lease. Skipped rows are checked with job_held_check, not "lost".
WITH mine AS (
    SELECT j.id, j.attempt FROM {schema}.jobs AS j
    WHERE j.id = ANY(%(ids)s::bigint[]) AND j.worker_id = %(worker_id)s
      AND j.state = 'running'
    ORDER BY j.id
    FOR NO KEY UPDATE OF j SKIP LOCKED
)
UPDATE {schema}.jobs AS j
SET lease_expires_at = GREATEST(j.lease_expires_at,
                                now() + make_interval(secs => %(lease)s::float8))
FROM mine JOIN unnest(%(ids)s::bigint[], %(attempts)s::integer[]) AS h(id, attempt)
     ON h.id = mine.id AND h.attempt = mine.attempt
WHERE j.id = mine.id
RETURNING j.id, j.cancel_requested_at IS NOT NULL AS cancel_requested;

-- name: job_held_check
-- Which of these jobs are still ours (no lock taken): a heartbeat that skipped a locked
-- row asks before calling it lost.
SELECT j.id FROM {schema}.jobs AS j
JOIN unnest(%(ids)s::bigint[], %(attempts)s::integer[]) AS h(id, attempt) ON h.id = j.id
WHERE j.id = ANY(%(ids)s::bigint[]) AND j.attempt = h.attempt
  AND j.worker_id = %(worker_id)s AND j.state = 'running';

-- name: job_cancel_fenced
-- The worker stopped a job whose cancellation was asked for (cancel_job): it ends
-- cancelled, is not retried, and the request is recorded in its errors.
UPDATE {schema}.jobs
SET state = 'cancelled', finished_at = now(), lease_expires_at = NULL,
    errors = errors || jsonb_build_array(jsonb_build_object(
        'attempt', attempt, 'kind', 'cancelled', 'at', now(), 'worker', worker_id,
        'message', 'cancelled on request while running'))
WHERE id = %(id)s AND attempt = %(attempt)s AND worker_id = %(worker_id)s
  AND state = 'running'
RETURNING id;

-- name: job_extend_lease_fenced
-- A handler asks for more time for its own job; no row means the lease is already lost.
UPDATE {schema}.jobs
SET lease_expires_at = GREATEST(lease_expires_at,
                                now() + make_interval(secs => %(seconds)s::float8))
WHERE id = %(id)s AND attempt = %(attempt)s AND worker_id = %(worker_id)s
  AND state = 'running'
RETURNING lease_expires_at;

-- name: job_release_fenced
-- Shutdown: hand unfinished jobs back at once. Uses no attempt (counters untouched);
-- the claim counter still moves on next time, so the old token stays dead.
WITH mine AS (
    SELECT j.id, j.attempt FROM {schema}.jobs AS j
    WHERE j.id = ANY(%(ids)s::bigint[]) AND j.worker_id = %(worker_id)s
      AND j.state = 'running'
    ORDER BY j.id
    FOR UPDATE OF j
), released AS (
    UPDATE {schema}.jobs AS j
    SET state = CASE WHEN j.cancel_requested_at IS NOT NULL THEN 'cancelled' ELSE 'queued' END,
        finished_at = CASE WHEN j.cancel_requested_at IS NOT NULL THEN now() END,
        run_at = now(), lease_expires_at = NULL, worker_id = NULL,
        started_at = CASE WHEN j.cancel_requested_at IS NOT NULL THEN j.started_at END
    FROM mine JOIN unnest(%(ids)s::bigint[], %(attempts)s::integer[]) AS r(id, attempt)
         ON r.id = mine.id AND r.attempt = mine.attempt
    WHERE j.id = mine.id
    RETURNING j.id, j.queue, j.state
)
-- (a job whose cancellation was asked for but not yet heard ends cancelled)
SELECT id, CASE WHEN state = 'queued' THEN pg_notify('{channel}', queue) END
FROM released;

-- name: job_reap_expired
-- Maintenance: jobs whose lease ran out belonged to a worker that died or froze.
-- Back to queued (notified), or failed with reason "lost" when attempts are used up.
-- SKIP LOCKED and LIMIT keep each pass short and safe beside running workers.
-- One autocommit statement, advisory lock included: "one worker at a time" without a
-- transaction left open, so a worker frozen mid-pass (SIGSTOP, VM pause) cannot hold
-- the lock, or the rows, and stop everyone else's reaping.
WITH lock AS MATERIALIZED (
    SELECT pg_try_advisory_xact_lock(hashtext(%(key)s)) AS locked
), expired AS (
    SELECT id FROM {schema}.jobs
    WHERE state = 'running' AND lease_expires_at < now()
      AND (SELECT locked FROM lock)
    ORDER BY lease_expires_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), reaped AS (
    UPDATE {schema}.jobs AS j
    SET lost_count = j.lost_count + 1,
        -- a job whose cancellation was asked for ends cancelled, not run again
        state = CASE WHEN j.cancel_requested_at IS NOT NULL THEN 'cancelled'
                     WHEN j.error_count + j.lost_count + 1 >= j.max_attempts
                     THEN 'failed' ELSE 'queued' END,
        finished_at = CASE WHEN j.cancel_requested_at IS NOT NULL
                             OR j.error_count + j.lost_count + 1 >= j.max_attempts
                           THEN now() END,
        -- 0 s after the first loss, then 1, 3, 7 ... s (capped at 5 min): a job that
        -- kills its worker (out of memory, a segfault) does not take down one worker
        -- after another in a tight loop.
        run_at = now() + make_interval(secs => least(power(2, j.lost_count) - 1, 300)),
        errors = j.errors || jsonb_build_array(jsonb_build_object(
            'attempt', j.attempt, 'kind', 'lost', 'at', now(), 'worker', j.worker_id,
            'message', 'lease lost: the worker stopped renewing it (crashed, killed or frozen)')),
        lease_expires_at = NULL, worker_id = NULL
    FROM expired
    WHERE j.id = expired.id
    RETURNING j.id, j.queue, j.state
)
SELECT id, state, CASE WHEN state = 'queued' THEN pg_notify('{channel}', queue) END
FROM reaped;

-- name: worker_heartbeat
-- Registers the worker on its first beat and touches it on every later one; an upsert,
-- so a live worker whose row was pruned (a long pause) reappears on its next beat.
INSERT INTO {schema}.workers (id, host, pid, queues, concurrency)
VALUES (%(id)s, %(host)s, %(pid)s, %(queues)s::text[], %(concurrency)s)
ON CONFLICT (id) DO UPDATE SET last_heartbeat_at = now();

-- name: worker_delete
DELETE FROM {schema}.workers WHERE id = %(id)s;

-- name: worker_prune_dead
DELETE FROM {schema}.workers
WHERE last_heartbeat_at < now() - make_interval(secs => %(older_than)s::float8)
RETURNING id;

-- name: job_prune_finished
-- Retention: delete finished jobs older than their state's retention, a small batch at a
-- time (SKIP LOCKED, LIMIT) so the pruner never holds many locks or a long transaction.
-- One range scan per state on jobs_finished_idx (state, finished_at): each state's own
-- cutoff bounds its scan, so a pass costs what it deletes, not the size of the history.
WITH old AS (
    SELECT c.id
    FROM (VALUES ('succeeded', %(keep_succeeded)s::float8),
                 ('failed', %(keep_failed)s::float8),
                 ('cancelled', %(keep_cancelled)s::float8)) AS r(state, keep)
    CROSS JOIN LATERAL (
        SELECT id FROM {schema}.jobs
        WHERE state = r.state AND finished_at < now() - make_interval(secs => r.keep)
          AND state IN ('succeeded', 'failed', 'cancelled')  -- lets the partial index match
        ORDER BY finished_at
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ) AS c
    LIMIT %(limit)s
)
DELETE FROM {schema}.jobs AS j
WHERE j.id = ANY(ARRAY(SELECT id FROM old))
RETURNING j.state;

-- name: jobs_vacuum_due
-- Whether the jobs table needs a vacuum that autovacuum is not giving it: autovacuum is
-- off (some servers run that way) or has not visited while dead rows piled up.
SELECT s.n_dead_tup > %(min_dead)s
       AND s.n_dead_tup > %(dead_fraction)s * GREATEST(s.n_live_tup, 1)
       AND (current_setting('autovacuum') = 'off'
            OR greatest(s.last_autovacuum, s.last_vacuum) IS NULL
            OR greatest(s.last_autovacuum, s.last_vacuum)
               < now() - make_interval(secs => %(stale_after)s::float8)) AS due,
       s.n_dead_tup, s.n_live_tup
FROM pg_stat_user_tables AS s
WHERE s.relid = '{schema}.jobs'::regclass;

-- name: jobs_vacuum_lock
-- Session-level: VACUUM cannot run inside a transaction, so no xact lock here.
SELECT pg_try_advisory_lock(hashtext(%(key)s)) AS locked;

-- name: jobs_vacuum_unlock
SELECT pg_advisory_unlock(hashtext(%(key)s));

-- name: jobs_vacuum
VACUUM (ANALYZE) {schema}.jobs;

-- name: queue_stats_list
SELECT queue, queued, scheduled, running, failed, oldest_queued_age_seconds,
       finished_last_minute, paused, waiting, max_running, max_running_per_group,
       rate_limit, rate_period
FROM {schema}.queue_stats
ORDER BY queue;

-- name: job_list
-- Newest first; each filter is optional (NULL matches everything).
SELECT id, queue, task, state, priority, attempt, max_attempts, run_at, created_at,
       finished_at, errors -> -1 ->> 'message' AS last_error
FROM {schema}.jobs
WHERE (%(queue)s::text IS NULL OR queue = %(queue)s)
  AND (%(state)s::text IS NULL OR state = %(state)s)
  AND (%(scheduled)s::boolean IS NULL OR (run_at > now()) = %(scheduled)s)
  AND (%(task)s::text IS NULL OR task = %(task)s)
ORDER BY id DESC
LIMIT %(limit)s;

-- name: job_retry
SELECT {schema}.retry_job(%(id)s) AS retried;

-- name: job_retry_failed
SELECT {schema}.retry_failed(%(queue)s, %(task)s) AS retried;

-- name: job_cancel
SELECT {schema}.cancel_job(%(id)s) AS state;

-- name: queue_pause
SELECT {schema}.pause_queue(%(queue)s);

-- name: queue_resume
SELECT {schema}.resume_queue(%(queue)s) AS resumed;

-- name: queue_known
-- A queue is known if it has jobs or a row in the queues table.
SELECT EXISTS (SELECT 1 FROM {schema}.queues WHERE name = %(queue)s)
    OR EXISTS (SELECT 1 FROM {schema}.jobs WHERE queue = %(queue)s) AS known;

-- name: job_prune
SELECT {schema}.prune_jobs(make_interval(secs => %(older_than)s::float8), %(states)s::text[])
    AS pruned;

-- name: worker_list
SELECT id, host, pid, queues, concurrency, started_at, last_heartbeat_at,
       round(extract(epoch FROM now() - last_heartbeat_at)::numeric, 3) AS heartbeat_age_seconds,
       (SELECT count(*) FROM {schema}.jobs AS j WHERE j.worker_id = w.id AND j.state = 'running')
           AS running
FROM {schema}.workers AS w
ORDER BY started_at;
