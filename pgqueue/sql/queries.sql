-- Every statement pgqueue runs. One place, named table-first.
-- Placeholders: {schema} (quoted schema name), {channel} (NOTIFY channel), %(x)s (bound).
-- Fencing: every write after a claim matches id AND attempt AND worker_id AND
-- state = 'running'. The worker id makes the token unique even if a claim's commit is
-- lost in a server crash (--fast-claims) and a later claim reuses the attempt number.
-- "attempt" counts claims and is the fencing token; error_count and lost_count count
-- what used an attempt up (a shutdown release uses none).

-- name: schema_inspect
-- What the schema holds, to tell apart a fresh schema (absent or empty), pgqueue's (its
-- version table pgqueue_version), one set up by an older pgqueue (its revision in
-- alembic_version, next to pgqueue's own jobs and workers tables and trigger function)
-- and anybody else's (any other object: see pgqueue/migrate.py). Catalog reads and
-- to_regclass only: a missing object is NULL, never an error, so this is safe inside a
-- caller's transaction. "objects" lists tables, views, sequences, functions and types by
-- name (indexes, and the row and array types that come with tables, are not objects of
-- their own).
SELECT to_regnamespace('{schema}') IS NOT NULL AS present,
       to_regclass('{schema}.pgqueue_version') IS NOT NULL AS version_table,
       to_regclass('{schema}.alembic_version') IS NOT NULL
         AND to_regclass('{schema}.jobs') IS NOT NULL
         AND to_regclass('{schema}.workers') IS NOT NULL
         AND to_regprocedure('{schema}.jobs_notify_insert()') IS NOT NULL
         AND EXISTS (SELECT FROM pg_attribute
                     WHERE attrelid = to_regclass('{schema}.alembic_version')
                       AND attname = 'version_num' AND NOT attisdropped)
         AND (SELECT count(*) FROM pg_attribute
              WHERE attrelid = to_regclass('{schema}.jobs') AND NOT attisdropped
                AND attname IN ('attempt', 'lease_expires_at', 'worker_id', 'dedupe_key')) = 4
         AS legacy_version_table,
       ARRAY(SELECT name FROM (
               SELECT relname::text AS name FROM pg_class
               WHERE relnamespace = to_regnamespace('{schema}')
                 AND relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c')
               UNION
               SELECT proname::text FROM pg_proc
               WHERE pronamespace = to_regnamespace('{schema}')
               UNION
               SELECT typname::text FROM pg_type
               WHERE typnamespace = to_regnamespace('{schema}')
                 AND (typtype IN ('d', 'e', 'r') OR (typtype = 'b' AND typcategory <> 'A'))
             ) o ORDER BY name) AS objects;

-- name: schema_revision
SELECT version_num FROM {schema}.pgqueue_version;

-- name: schema_legacy_revision
-- An older pgqueue's version table (alembic's default name); schema_inspect checked it
-- sits next to pgqueue's tables before this reads it.
SELECT version_num FROM {schema}.alembic_version;

-- name: schema_legacy_version_table_move
-- The older pgqueue's version table takes pgqueue's own name (alembic_version is what an
-- application's own alembic calls its table), inside migrate's transaction: it moves
-- with the upgrade or not at all.
ALTER TABLE {schema}.alembic_version RENAME TO pgqueue_version;

-- name: schema_legacy_version_pkey_move
-- ... and its primary key (renaming the index renames the constraint with it).
ALTER INDEX IF EXISTS {schema}.alembic_version_pkc RENAME TO pgqueue_version_pkc;

-- name: role_exists
-- pgqueue grant (pgqueue/roles.py): the role must exist before it is granted anything.
SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = %(role)s) AS present;

-- name: schema_objects
-- Every table, view, sequence and function of the schema, for roles.audit (the role
-- model must name each): name, type, for a function whether it runs as its owner and
-- its settings (search_path), whether PUBLIC holds any privilege on it (the default ACL
-- when it has none of its own: functions give PUBLIC EXECUTE), and a relation's columns.
SELECT c.relname::text AS name,
       CASE WHEN c.relkind IN ('r', 'p') THEN 'table' WHEN c.relkind IN ('v', 'm') THEN 'view'
            WHEN c.relkind = 'S' THEN 'sequence' ELSE 'other:' || c.relkind::text END AS kind,
       NULL::boolean AS definer, NULL::text[] AS settings,
       EXISTS (SELECT 1 FROM aclexplode(coalesce(c.relacl, acldefault(
                   CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END::"char", c.relowner))) AS a
               WHERE a.grantee = 0) AS public,
       ARRAY(SELECT a.attname::text FROM pg_attribute AS a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum) AS columns
FROM pg_class AS c
WHERE c.relnamespace = to_regnamespace('{schema}') AND c.relkind NOT IN ('i', 'I', 'c', 't')
UNION ALL
SELECT p.proname::text, 'function', p.prosecdef, p.proconfig,
       EXISTS (SELECT 1 FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) AS a
               WHERE a.grantee = 0),
       NULL
FROM pg_proc AS p
WHERE p.pronamespace = to_regnamespace('{schema}')
ORDER BY 1, 2;

-- name: job_insert
-- The common case, no dedupe key: a plain INSERT (ON CONFLICT's speculative insertion
-- costs more per row, so it is used only when a key is given).
INSERT INTO {schema}.jobs (queue, task, args, kwargs, priority, run_at, max_attempts,
                           group_key, headers)
VALUES (%(queue)s, %(task)s, %(args)s::jsonb, %(kwargs)s::jsonb, %(priority)s,
        COALESCE(%(run_at)s::timestamptz, now() + make_interval(secs => %(delay)s::float8)),
        %(max_attempts)s, %(group_key)s, %(headers)s::jsonb)
RETURNING id;

-- name: job_insert_deduped
-- Unique jobs. While a job with the key is waiting, queued or running this inserts
-- nothing: ON CONFLICT targets the partial unique index jobs_dedupe_key_idx, so of many
-- connections enqueuing one key at once exactly one inserts (the others wait for its
-- commit, then conflict) and the caller looks the holder up. With unique_for, a job with
-- the key that finished less than that long ago (found through jobs_dedupe_finished_idx
-- and succeeded_jobs_dedupe_idx) counts too and is returned instead. enqueue_replacing
-- (migration 0007, job_insert_replacing) has the same recent CTE: keep the two alike.
WITH recent AS (
    SELECT id FROM {schema}.all_jobs
    WHERE %(unique_for)s::float8 IS NOT NULL AND dedupe_key = %(dedupe_key)s
      AND state IN ('succeeded', 'failed', 'cancelled')
      AND finished_at > now() - make_interval(secs => %(unique_for)s::float8)
    ORDER BY finished_at DESC
    LIMIT 1
), inserted AS (
    INSERT INTO {schema}.jobs (queue, task, args, kwargs, priority, run_at, max_attempts,
                               dedupe_key, group_key, headers)
    SELECT %(queue)s, %(task)s, %(args)s::jsonb, %(kwargs)s::jsonb, %(priority)s,
           COALESCE(%(run_at)s::timestamptz, now() + make_interval(secs => %(delay)s::float8)),
           %(max_attempts)s, %(dedupe_key)s, %(group_key)s, %(headers)s::jsonb
    WHERE NOT EXISTS (SELECT 1 FROM recent)
    ON CONFLICT (dedupe_key)
        WHERE dedupe_key IS NOT NULL AND state IN ('waiting', 'queued', 'running')
    DO NOTHING
    RETURNING id
)
SELECT id FROM inserted UNION ALL SELECT id FROM recent;

-- name: job_insert_replacing
-- Unique jobs with replace: the function enqueue_replacing (migration 0007) does it, an
-- INSERT ... ON CONFLICT DO UPDATE like job_insert_deduped's: a queued or waiting holder
-- of the key takes the new arguments, a running one is left alone (no row comes back and
-- the caller looks it up), unique_for as in job_insert_deduped. A function that runs as
-- its owner, so that a producer role replaces arguments without UPDATE on jobs (see
-- pgqueue/roles.py).
SELECT r.id FROM {schema}.enqueue_replacing(
    %(queue)s::text, %(task)s::text, %(args)s::jsonb, %(kwargs)s::jsonb,
    %(priority)s::smallint,
    COALESCE(%(run_at)s::timestamptz, now() + make_interval(secs => %(delay)s::float8)),
    %(max_attempts)s::integer, %(dedupe_key)s::text, %(group_key)s::text,
    %(unique_for)s::float8) AS r(id);

-- name: job_find_unfinished_by_dedupe_key
-- (a waiting job holds its dedupe key too: see jobs_dedupe_key_idx in 0003)
SELECT id FROM {schema}.jobs
WHERE dedupe_key = %(dedupe_key)s AND state IN ('waiting', 'queued', 'running');

-- name: job_insert_many
-- One round trip for any number of jobs: the batch travels as one jsonb array.
-- RETURNING follows the input order; jobs skipped by a dedupe key are left out.
INSERT INTO {schema}.jobs (queue, task, args, kwargs, priority, run_at, max_attempts,
                           dedupe_key, group_key, headers)
SELECT j.queue, j.task, j.args, j.kwargs, j.priority,
       COALESCE(j.run_at, now() + make_interval(secs => j.delay)), j.max_attempts,
       j.dedupe_key, j.group_key, j.headers
FROM ROWS FROM (jsonb_to_recordset(%(jobs)s::jsonb)
         AS (queue text, task text, args jsonb, kwargs jsonb, priority smallint,
             run_at timestamptz, delay float8, max_attempts integer, dedupe_key text,
             group_key text, headers jsonb))
     WITH ORDINALITY AS j(queue, task, args, kwargs, priority, run_at, delay,
                          max_attempts, dedupe_key, group_key, headers, ord)
ORDER BY j.ord
ON CONFLICT (dedupe_key)
    WHERE dedupe_key IS NOT NULL AND state IN ('waiting', 'queued', 'running')
DO NOTHING
RETURNING id;

-- name: job_insert_many_after
-- Jobs with dependencies (after=), one or a batch; the batch travels as in
-- job_insert_many. Each row starts in the state dependency_state() gives it: 'waiting'
-- until they all succeed, 'queued' if they already have, 'cancelled' (finished, with a
-- 'dependency' error) if one failed or was cancelled; a dependency that does not exist
-- raises foreign_key_violation. Only jobs with dependencies come here, so job_insert and
-- the COPY path stay as they are. A dedupe key held by an unfinished (waiting too) job
-- returns nothing for that row, as in job_insert_deduped.
INSERT INTO {schema}.jobs AS n (queue, task, args, kwargs, priority, run_at, max_attempts,
                                dedupe_key, depends_on, state, finished_at, errors,
                                group_key, headers)
SELECT j.queue, j.task, j.args, j.kwargs, j.priority,
       COALESCE(j.run_at, now() + make_interval(secs => j.delay)), j.max_attempts,
       j.dedupe_key, j.depends_on, s.state,
       CASE WHEN s.state = 'cancelled' THEN now() END,
       CASE WHEN s.state = 'cancelled' THEN jsonb_build_array(jsonb_build_object(
                'attempt', 0, 'kind', 'dependency', 'at', now(),
                'message', 'a job it depends on had already failed or been cancelled'))
            ELSE '[]'::jsonb END,
       j.group_key, j.headers
FROM ROWS FROM (jsonb_to_recordset(%(jobs)s::jsonb)
         AS (queue text, task text, args jsonb, kwargs jsonb, priority smallint,
             run_at timestamptz, delay float8, max_attempts integer, dedupe_key text,
             depends_on bigint[], group_key text, headers jsonb))
     WITH ORDINALITY AS j(queue, task, args, kwargs, priority, run_at, delay,
                          max_attempts, dedupe_key, depends_on, group_key, headers, ord)
CROSS JOIN LATERAL (SELECT {schema}.dependency_state(j.depends_on) AS state) AS s
ORDER BY j.ord
ON CONFLICT (dedupe_key)
    WHERE dedupe_key IS NOT NULL AND state IN ('waiting', 'queued', 'running')
DO NOTHING
RETURNING n.id, n.state;

-- name: job_missing_dependencies
-- Before a job with dependencies goes into a caller's transaction: the ids that name no
-- job (a failed INSERT would abort the caller's whole transaction).
SELECT d FROM unnest(%(ids)s::bigint[]) AS d
WHERE NOT EXISTS (SELECT 1 FROM {schema}.all_jobs AS j WHERE j.id = d)
ORDER BY d;

-- name: job_resolve_dependents
-- Run after the commit that finished these jobs, as a statement of its own (see
-- resolve_dependents in 0003: a job whose two parents finish at once is then seen ready
-- by the later one). Their waiting dependents are queued, or cancelled if one of these
-- failed. The probe on jobs_depends_on_idx (GIN, waiting jobs only) keeps it cheap for
-- the completer, which runs it after every batch: resolve_dependents runs only when a job
-- waits for one of these. (A count, not EXISTS: with EXISTS a generic plan walked every
-- waiting job, expecting to stop at an early match that, most of the time, is not there.)
SELECT CASE WHEN (SELECT count(*) FROM {schema}.jobs
                  WHERE state = 'waiting' AND depends_on && %(ids)s::bigint[]) > 0
            THEN {schema}.resolve_dependents(%(ids)s::bigint[]) ELSE 0 END AS moved;

-- name: job_resolve_new
-- Right after jobs with dependencies were committed (on pgqueue's own connection): if
-- one of them is waiting although its dependencies have all finished (the last one
-- finished while the insert was being committed, and its resolve could not see the new
-- row yet), resolve it now. Reads only these rows; resolve_dependents runs only then.
WITH ready AS (
    SELECT w.depends_on FROM {schema}.jobs AS w
    WHERE w.id = ANY(%(ids)s::bigint[]) AND w.state = 'waiting'
      AND (NOT EXISTS (SELECT 1 FROM {schema}.jobs AS d
                       WHERE d.id = ANY(w.depends_on) AND d.state <> 'succeeded')
           OR EXISTS (SELECT 1 FROM {schema}.jobs AS d
                      WHERE d.id = ANY(w.depends_on) AND d.state IN ('failed', 'cancelled')))
), deps AS (
    SELECT array_agg(DISTINCT d.id) AS ids
    FROM ready CROSS JOIN LATERAL unnest(ready.depends_on) AS d(id)
)
SELECT CASE WHEN deps.ids IS NULL THEN 0 ELSE {schema}.resolve_dependents(deps.ids) END
    AS moved
FROM deps;

-- name: job_id_reserve
-- Ids for a COPY batch, taken from the identity's sequence in one round trip, so
-- enqueue_many can return them in input order (COPY itself returns nothing).
-- The sequence is named as a literal: pg_get_serial_sequence() per row cost 5x more.
-- One array, not a row per id: 20,000 ids in 9 ms instead of 12 (row decoding).
-- (Each id goes to the item at its position; in this plan they come out ascending.)
SELECT array_agg(nextval('{schema}.jobs_id_seq'::regclass))
FROM generate_series(1, %(n)s);

-- name: job_copy
-- The bulk fast path (no dedupe keys, due now): run_at and created_at take now().
-- The statement-level NOTIFY trigger fires for COPY as for INSERT.
COPY {schema}.jobs (id, queue, task, args, kwargs, priority, max_attempts, group_key, headers)
FROM STDIN;

-- name: job_get
-- run_at clamped to what Python can load: a row put in by hand (or from before 0005,
-- jobs_run_at_check) may hold infinity, and psycopg refuses to load it.
SELECT id, queue, task, args, kwargs, state, priority,
       LEAST(GREATEST(run_at, '0001-02-01+00'), '9999-01-01+00') AS run_at, attempt,
       max_attempts,
       error_count, lost_count, lease_expires_at, worker_id, dedupe_key, errors, result,
       created_at, started_at, finished_at, cancel_requested_at, group_key, depends_on,
       progress, checkpoint, headers
FROM {schema}.all_jobs WHERE id = %(id)s;

-- name: job_ids_existing
-- Which of these ids are jobs (each found by primary key in both tables).
SELECT id FROM {schema}.all_jobs WHERE id = ANY(%(ids)s::bigint[]);

-- name: job_outcome
-- What job.result() needs: the state, the stored result, the last error.
SELECT state, result, errors -> -1 AS last_error, task, attempt, max_attempts,
       run_at > now() AS scheduled
FROM {schema}.all_jobs WHERE id = %(id)s;

-- name: job_claim_batch
-- The fast path: jobs without a group key, of this worker's queues that have no limits
-- (paused and limited queues are left to job_claim_flow). SKIP LOCKED lets many workers
-- claim at once without waiting on each other.
-- One LATERAL subquery per queue: with "queue = ANY(array)" PostgreSQL cannot return
-- rows in index order and would read and sort every queued job. Per queue, the scan
-- walks jobs_claim_idx (queue, priority DESC, run_at, id) WHERE state = 'queued' AND
-- group_key IS NULL in ORDER BY order and stops at LIMIT (tests/integration/test_explain.py
-- keeps it so). With several queues up to LIMIT rows per queue are locked and the best
-- LIMIT kept; the others are unlocked when the statement ends.
-- skip_tasks: tasks this worker has handed back as unknown to its app (a rolling deploy):
-- it stops taking them, so that it does not keep winning them from the new workers that
-- know them (each hand-back is a claim race, and the old worker won them all, for minutes).
-- Usually empty: a filter on the rows the scan returns, the plan unchanged.
WITH picked AS (
    SELECT c.id
    FROM (
        -- the queues table is tiny; this is one lookup each
        SELECT u.name FROM unnest(%(queues)s::text[]) AS u(name)
        WHERE NOT EXISTS (SELECT 1 FROM {schema}.queues AS p
                          WHERE p.name = u.name
                            AND (p.paused_at IS NOT NULL OR p.max_running IS NOT NULL
                                 OR p.max_running_per_group IS NOT NULL
                                 OR p.rate_limit IS NOT NULL))
    ) AS q
    CROSS JOIN LATERAL (
        SELECT id, priority, run_at FROM {schema}.jobs
        WHERE state = 'queued' AND group_key IS NULL AND queue = q.name AND run_at <= now()
          AND task <> ALL(%(skip_tasks)s::text[])
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
          j.error_count, j.lost_count, j.priority, j.checkpoint::text, j.headers::text,
          -- queue wait (due to claimed), on the server's clock: run_at is the enqueue
          -- time of a job due at once, the end of the delay or backoff otherwise
          extract(epoch FROM now() - j.run_at)::float8;

-- name: queue_lock_limited
-- The first statement of every job_claim_flow transaction. Limited queues (a cap on
-- running jobs, a per-group cap or a rate limit) are claimed in turn: their rows are
-- locked here, in name order (workers with overlapping queues cannot deadlock), and
-- job_claim_flow then counts in its own, fresh snapshot (READ COMMITTED takes one per
-- statement), which sees every claim committed before this lock was granted. One
-- statement could not do it: its snapshot would be taken before it waited for the lock,
-- and two claims would both count the same free slot.
SELECT name FROM {schema}.queues
WHERE name = ANY(%(queues)s::text[]) AND paused_at IS NULL
  AND (max_running IS NOT NULL OR max_running_per_group IS NOT NULL OR rate_limit IS NOT NULL)
ORDER BY name
FOR UPDATE;

-- name: job_claim_flow
-- What the fast path leaves: every job of a limited queue, and jobs with a group key.
-- Runs after queue_lock_limited in one transaction, when job_claim_batch did not fill
-- the batch.
-- lim: per queue of this worker (paused ones left out), how many jobs it may take now:
-- the batch size, cut by the queue's free running slots and what is left of its rate
-- window (CASE evaluates a count only for a queue that has that limit). plain_n: the
-- ungrouped jobs of an unlimited queue are the fast path's, so none here.
-- plain: ungrouped jobs of limited queues, as in job_claim_batch.
-- heads: jobs with a group key (a tenant) are claimed round-robin across groups. A
-- recursive skip scan on jobs_group_claim_idx (queue, group_key, priority DESC, run_at,
-- id) finds each group's best due job with one index probe per group, however many jobs
-- a flooding group has queued. groups: the groups that may run more (per-group cap),
-- best head first, with an even share of the batch each. grouped: up to that share from
-- each group. Ungrouped jobs count as their own group: every job of turn 1 (each group's
-- first, every ungrouped job) goes before any group's second.
-- picked: per queue at most lim.n (a limit is never exceeded), then the batch.
-- Rows locked but not picked are unlocked when the claim's transaction commits.
WITH lim AS MATERIALIZED (
    SELECT u.name, q.max_running_per_group AS group_cap,
           least(%(limit)s::integer,
                 CASE WHEN q.max_running IS NULL THEN %(limit)s::integer
                      ELSE greatest(q.max_running - (
                          SELECT count(*) FROM {schema}.jobs AS r
                          WHERE r.state = 'running' AND r.queue = u.name), 0)::integer END,
                 CASE WHEN q.rate_limit IS NULL THEN %(limit)s::integer
                      WHEN q.rate_window_start = to_timestamp(
                          floor(extract(epoch FROM now()) / q.rate_period) * q.rate_period)
                      THEN greatest(q.rate_limit - q.rate_window_count, 0)
                      ELSE q.rate_limit END) AS n,
           coalesce(q.max_running IS NOT NULL OR q.max_running_per_group IS NOT NULL
                    OR q.rate_limit IS NOT NULL, false) AS limited
    FROM unnest(%(queues)s::text[]) AS u(name)
    LEFT JOIN {schema}.queues AS q ON q.name = u.name
    WHERE q.paused_at IS NULL
), plain AS (
    SELECT c.id, lim.name AS queue, c.priority, c.run_at, 1::bigint AS turn
    FROM lim CROSS JOIN LATERAL (
        -- lim.limited inside: a one-time filter, so an unlimited queue's scan never runs
        SELECT id, priority, run_at FROM {schema}.jobs
        WHERE lim.limited
          AND state = 'queued' AND group_key IS NULL AND queue = lim.name AND run_at <= now()
        ORDER BY priority DESC, run_at, id
        LIMIT lim.n
        FOR UPDATE SKIP LOCKED
    ) AS c
), heads AS (
    WITH RECURSIVE walk AS (
        SELECT lim.name AS queue, h.group_key, h.priority, h.run_at, h.id
        FROM lim CROSS JOIN LATERAL (
            SELECT group_key, priority, run_at, id FROM {schema}.jobs
            WHERE state = 'queued' AND group_key IS NOT NULL AND queue = lim.name
              AND run_at <= now()
            ORDER BY group_key, priority DESC, run_at, id
            LIMIT 1
        ) AS h
        WHERE lim.n > 0
        UNION ALL
        SELECT w.queue, h.group_key, h.priority, h.run_at, h.id
        FROM walk AS w CROSS JOIN LATERAL (
            SELECT group_key, priority, run_at, id FROM {schema}.jobs
            WHERE state = 'queued' AND group_key IS NOT NULL AND queue = w.queue
              AND group_key > w.group_key AND run_at <= now()
            ORDER BY group_key, priority DESC, run_at, id
            LIMIT 1
        ) AS h
    )
    SELECT * FROM walk
), groups AS (
    SELECT g.queue, g.group_key, g.room, g.turn,
           greatest(1, ceil(lim.n::numeric / count(*) OVER (PARTITION BY g.queue)))::integer
               AS share
    FROM (
        SELECT h.queue, h.group_key,
               CASE WHEN lim.group_cap IS NULL THEN lim.n
                    ELSE least(lim.n, lim.group_cap - (
                        SELECT count(*) FROM {schema}.jobs AS r
                        WHERE r.state = 'running' AND r.group_key IS NOT NULL
                          AND r.queue = h.queue AND r.group_key = h.group_key))::integer
               END AS room,
               row_number() OVER (PARTITION BY h.queue
                                  ORDER BY h.priority DESC, h.run_at, h.id) AS turn
        FROM heads AS h JOIN lim ON lim.name = h.queue
    ) AS g
    JOIN lim ON lim.name = g.queue
    WHERE g.room > 0 AND g.turn <= lim.n
), grouped AS (
    SELECT c.id, g.queue, c.priority, c.run_at, row_number() OVER (
               PARTITION BY g.queue, g.group_key ORDER BY c.priority DESC, c.run_at, c.id
           ) AS turn
    FROM groups AS g CROSS JOIN LATERAL (
        SELECT id, priority, run_at FROM {schema}.jobs
        WHERE state = 'queued' AND group_key = g.group_key AND queue = g.queue
          AND run_at <= now()
        ORDER BY priority DESC, run_at, id
        LIMIT least(g.room, g.share)
        FOR UPDATE SKIP LOCKED
    ) AS c
), picked AS (
    SELECT x.id, x.turn, x.priority, x.run_at
    FROM (
        SELECT a.*, row_number() OVER (PARTITION BY a.queue
                                       ORDER BY a.turn, a.priority DESC, a.run_at, a.id) AS nth
        FROM (SELECT * FROM plain UNION ALL SELECT * FROM grouped) AS a
    ) AS x
    JOIN lim ON lim.name = x.queue
    WHERE x.nth <= lim.n
    ORDER BY x.turn, x.priority DESC, x.run_at, x.id
    LIMIT %(limit)s
), claimed AS (
    UPDATE {schema}.jobs AS j
    SET state = 'running', attempt = j.attempt + 1, worker_id = %(worker_id)s,
        started_at = now(), lease_expires_at = now() + make_interval(secs => %(lease)s::float8)
    WHERE j.id = ANY(ARRAY(SELECT id FROM picked))
    RETURNING j.id, j.queue, j.task, j.args::text, j.kwargs::text, j.attempt, j.max_attempts,
              j.error_count, j.lost_count, j.priority, j.checkpoint::text, j.headers::text,
              extract(epoch FROM now() - j.run_at)::float8  -- as in job_claim_batch
), rate_counted AS (
    -- a rate-limited queue's window count moves with what this claim took (its row is
    -- locked by queue_lock_limited, so the counts add up exactly)
    UPDATE {schema}.queues AS q
    SET rate_window_start = to_timestamp(
            floor(extract(epoch FROM now()) / q.rate_period) * q.rate_period),
        rate_window_count = c.n + CASE
            WHEN q.rate_window_start = to_timestamp(
                floor(extract(epoch FROM now()) / q.rate_period) * q.rate_period)
            THEN q.rate_window_count ELSE 0 END
    FROM (SELECT queue, count(*) AS n FROM claimed GROUP BY queue) AS c
    WHERE q.name = c.queue AND q.rate_limit IS NOT NULL
)
SELECT * FROM claimed;

-- name: job_seconds_to_next
-- Asked only by an idle worker: seconds until the earliest queued job of its queues is
-- due (NULL if none), measured on the server's clock so worker clocks do not matter.
-- Paused queues do not count (their due jobs would make the worker think it is late).
-- A run_at put in by hand as infinity (jobs_run_at_check forbids it) must not make
-- the subtraction fail: -infinity is due now, infinity never.
SELECT CASE WHEN isfinite(min(run_at)) THEN EXTRACT(EPOCH FROM min(run_at) - now())::float8
            WHEN min(run_at) = '-infinity' THEN 0 END AS seconds
FROM {schema}.jobs
WHERE state = 'queued' AND task <> ALL(%(skip_tasks)s::text[])  -- as job_claim_batch
  AND queue = ANY(ARRAY(
      SELECT u.name FROM unnest(%(queues)s::text[]) AS u(name)
      WHERE NOT EXISTS (SELECT 1 FROM {schema}.queues AS p
                        WHERE p.name = u.name AND p.paused_at IS NOT NULL)));

-- name: job_complete_fenced
-- Batched completion: the batch's jobs move from jobs to succeeded_jobs (migration 0004:
-- a DELETE and an INSERT into an insert-only table cost about half the server time of an
-- update in place, and jobs stays small). A row that does not match (id, attempt,
-- worker, running) is a job whose lease was lost: it stays where it is, missing from
-- RETURNING.
-- "coalesce(state, '') = 'running'" (here, in the heartbeat and the release) keeps the
-- planner off jobs_lease_idx (state = 'running'): after an ANALYZE that saw few running
-- jobs it preferred that index, whose entries for jobs finished since (not vacuumed yet)
-- each cost a heap visit, so every batch of a long drain got slower (20 ms -> 115 ms per
-- batch, half the drain rate). By primary key the cost is the batch's own size.
-- "id = ANY(ids)" keeps the lookup on the primary key (a join with the decoded batch
-- got merge-joined over the whole index). Each job's attempt and result are looked up in
-- a jsonb object built once, {"id": [attempt, result], ...}, as in job_heartbeat_fenced:
-- a join with jsonb_to_recordset(batch) was planned as a nested loop (both sides
-- estimated tiny), n x n comparisons: 125,000 for a batch of 500, 35-800 ms, wherever
-- the statement is planned with its values (behind a pooler nothing is prepared, so
-- every batch is). No lock order is needed: the heartbeat and
-- the reaper skip locked rows instead of waiting, and one worker's completions do not
-- overlap. Whoever waits for a result (job.result()) hears of the whole batch on
-- {done_channel}: one NOTIFY per 300 ids (a payload must stay under 8000 bytes; 300
-- bigints with commas take at most 6000).
WITH d AS MATERIALIZED (
    SELECT %(done)s::jsonb AS map
), gone AS (
    DELETE FROM {schema}.jobs AS j
    USING d
    WHERE j.id = ANY(%(ids)s::bigint[])
      AND j.attempt = (d.map -> j.id::text ->> 0)::integer
      AND j.worker_id = %(worker_id)s
      AND coalesce(j.state, '') = 'running'  -- by id, never by jobs_lease_idx: see above
    RETURNING j.id, j.queue, j.task, j.args, j.kwargs, j.priority, j.run_at, j.attempt,
              j.max_attempts, j.error_count, j.lost_count, j.worker_id, j.dedupe_key,
              j.errors, nullif(d.map -> j.id::text -> 1, 'null') AS result, j.created_at,
              j.started_at, j.cancel_requested_at, j.group_key, j.depends_on, j.progress,
              j.checkpoint, j.headers
), done AS (
    INSERT INTO {schema}.succeeded_jobs (
        id, queue, task, args, kwargs, state, priority, run_at, attempt, max_attempts,
        error_count, lost_count, worker_id, dedupe_key, errors, result, created_at,
        started_at, finished_at, cancel_requested_at, group_key, depends_on, progress,
        checkpoint, headers)
    SELECT id, queue, task, args, kwargs, 'succeeded', priority, run_at, attempt,
           max_attempts, error_count, lost_count, worker_id, dedupe_key, errors, result,
           created_at, started_at, now(), cancel_requested_at, group_key, depends_on,
           progress, checkpoint, headers
    FROM gone
    RETURNING id
), told AS (
    SELECT pg_notify('{done_channel}', string_agg(x.id::text, ','))
    FROM (SELECT id, row_number() OVER () - 1 AS n FROM done) AS x
    GROUP BY x.n / 300
)
-- (the condition makes the statement run told, once.) has_waiting: whether a job waits
-- for one of these (one probe of jobs_depends_on_idx, evaluated once): only then does the
-- completer run job_resolve_dependents after the commit, so a plain drain pays no extra
-- round trip. A dependent committed while this statement ran is not seen here; its own
-- insert resolves it after its commit (job_resolve_new), or the sweep does.
SELECT id, (SELECT count(*) FROM {schema}.jobs AS w
            WHERE w.state = 'waiting' AND w.depends_on && %(ids)s::bigint[]) > 0
           AS has_waiting
FROM done
WHERE (SELECT count(*) FROM told) >= 0;

-- name: job_fail_fenced
-- One failed attempt: back to queued after the backoff, or to failed (the dead letter)
-- when the attempts are used up or the error is final (then {done_channel} hears it).
WITH failed AS (
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
    RETURNING id, state, run_at
)
SELECT state, run_at, CASE WHEN state = 'failed' THEN pg_notify('{done_channel}', id::text) END
FROM failed;

-- name: job_snooze_fenced
-- The handler raised Snooze(seconds): back to queued, due that many seconds from now,
-- without using an attempt (error_count and lost_count stay; attempt, the claim counter
-- and fencing token, moves on at the next claim as always). Bounded: once the claims
-- that used no attempt (attempt - error_count - lost_count: snoozes, shutdown releases,
-- hand-backs) reach %(max_snoozes)s the job fails instead, kind 'snoozed', so a job
-- cannot snooze forever unnoticed. A cancellation asked meanwhile ends it cancelled.
WITH snoozed AS (
    UPDATE {schema}.jobs AS j
    SET state = CASE WHEN j.cancel_requested_at IS NOT NULL THEN 'cancelled'
                     WHEN j.attempt - j.error_count - j.lost_count >= %(max_snoozes)s
                     THEN 'failed' ELSE 'queued' END,
        finished_at = CASE WHEN j.cancel_requested_at IS NOT NULL
                             OR j.attempt - j.error_count - j.lost_count >= %(max_snoozes)s
                           THEN now() END,
        run_at = CASE WHEN j.cancel_requested_at IS NOT NULL
                        OR j.attempt - j.error_count - j.lost_count >= %(max_snoozes)s
                      THEN j.run_at
                      ELSE now() + make_interval(secs => %(seconds)s::float8) END,
        errors = CASE WHEN j.cancel_requested_at IS NULL
                       AND j.attempt - j.error_count - j.lost_count >= %(max_snoozes)s
                      THEN j.errors || jsonb_build_array(jsonb_build_object(
                          'attempt', j.attempt, 'kind', 'snoozed', 'at', now(),
                          'worker', j.worker_id,
                          'message', 'snoozed too often: ' || (j.attempt - j.error_count
                              - j.lost_count) || ' claims used no attempt (at most '
                              || %(max_snoozes)s || ')'))
                      ELSE j.errors END,
        lease_expires_at = NULL, worker_id = NULL
    WHERE j.id = %(id)s AND j.attempt = %(attempt)s AND j.worker_id = %(worker_id)s
      AND j.state = 'running'
    RETURNING j.id, j.state
)
SELECT state, CASE WHEN state <> 'queued' THEN pg_notify('{done_channel}', id::text) END
FROM snoozed;

-- name: job_heartbeat_fenced
-- Renews every lease a worker holds in one statement (run by the heartbeat sidecar,
-- pgqueue/worker/sidecar.py), writing the progress handlers reported; ids missing from
-- RETURNING were lost. GREATEST keeps a lease a handler extended on purpose from being shortened.
-- Locks in id order, like job_complete_fenced (no deadlock between the two), and skips
-- rows someone else holds locked (an operator's open UPDATE): one such row must not
-- stall every other lease. Skipped rows are checked with job_held_check, not "lost".
-- The attempt of each id is looked up in a jsonb object built once ({"id": attempt}):
-- a join with unnest(ids, attempts) was planned as a nested loop (both sides estimated
-- tiny), n x n comparisons: 136 ms for 1,000 held jobs, seconds for 10,000.
WITH mine AS (
    SELECT j.id, j.attempt FROM {schema}.jobs AS j
    WHERE j.id = ANY(%(ids)s::bigint[]) AND j.worker_id = %(worker_id)s
      AND coalesce(j.state, '') = 'running'  -- by id, never by jobs_lease_idx: see above
    ORDER BY j.id
    FOR NO KEY UPDATE OF j SKIP LOCKED
), held AS MATERIALIZED (
    SELECT jsonb_object(%(ids)s::bigint[]::text[], %(attempts)s::integer[]::text[]) AS map,
           %(progress)s::jsonb AS progress
)
UPDATE {schema}.jobs AS j
SET lease_expires_at = GREATEST(j.lease_expires_at,
                                now() + make_interval(secs => %(lease)s::float8)),
    -- ctx.progress() since the last beat ({"id": {done, total, message}}), stamped now;
    -- fenced with the lease (the same row, the same attempt)
    progress = coalesce((held.progress -> mine.id::text) || jsonb_build_object('at', now()),
                        j.progress)
FROM mine, held
WHERE j.id = mine.id AND (held.map ->> mine.id::text)::integer = mine.attempt
RETURNING j.id, j.cancel_requested_at IS NOT NULL AS cancel_requested;

-- name: job_held_check
-- Which of these jobs are still ours (no lock taken): a heartbeat that skipped a locked
-- row asks before calling it lost.
-- (attempts looked up as in job_heartbeat_fenced; MATERIALIZED builds the object once,
-- a subquery in FROM got inlined and rebuilt it for every row)
WITH held AS MATERIALIZED (
    SELECT jsonb_object(%(ids)s::bigint[]::text[], %(attempts)s::integer[]::text[]) AS map
)
SELECT j.id
FROM {schema}.jobs AS j, held
WHERE j.id = ANY(%(ids)s::bigint[]) AND (held.map ->> j.id::text)::integer = j.attempt
  AND j.worker_id = %(worker_id)s AND j.state = 'running';

-- name: job_cancel_fenced
-- The worker stopped a job whose cancellation was asked for (cancel_job), or its handler
-- raised Cancel(reason): it ends cancelled, is not retried, and %(message)s is recorded
-- in its errors. Whoever waits for its result hears it on {done_channel}.
WITH cancelled AS (
    UPDATE {schema}.jobs
    SET state = 'cancelled', finished_at = now(), lease_expires_at = NULL,
        errors = errors || jsonb_build_array(jsonb_build_object(
            'attempt', attempt, 'kind', 'cancelled', 'at', now(), 'worker', worker_id,
            'message', %(message)s::text))
    WHERE id = %(id)s AND attempt = %(attempt)s AND worker_id = %(worker_id)s
      AND state = 'running'
    RETURNING id
)
SELECT id, pg_notify('{done_channel}', id::text) FROM cancelled;

-- name: job_extend_lease_fenced
-- A handler asks for more time for its own job; no row means the lease is already lost.
UPDATE {schema}.jobs
SET lease_expires_at = GREATEST(lease_expires_at,
                                now() + make_interval(secs => %(seconds)s::float8))
WHERE id = %(id)s AND attempt = %(attempt)s AND worker_id = %(worker_id)s
  AND state = 'running'
RETURNING lease_expires_at;

-- name: job_checkpoint_fenced
-- ctx.checkpoint(state): the handler's resume state, stored at once (run on the heartbeat
-- sidecar's connection); no row means the lease is already lost. The claim hands it to
-- the next attempt (ctx.checkpoint_state).
UPDATE {schema}.jobs
SET checkpoint = %(state)s::jsonb
WHERE id = %(id)s AND attempt = %(attempt)s AND worker_id = %(worker_id)s
  AND state = 'running'
RETURNING id;

-- name: job_release_fenced
-- Shutdown: hand unfinished jobs back at once. Uses no attempt (counters untouched);
-- the claim counter still moves on next time, so the old token stays dead.
WITH mine AS (
    SELECT j.id, j.attempt FROM {schema}.jobs AS j
    WHERE j.id = ANY(%(ids)s::bigint[]) AND j.worker_id = %(worker_id)s
      AND coalesce(j.state, '') = 'running'  -- by id, never by jobs_lease_idx: see above
    ORDER BY j.id
    FOR UPDATE OF j
), held AS MATERIALIZED (  -- attempts looked up as in job_heartbeat_fenced
    SELECT jsonb_object(%(ids)s::bigint[]::text[], %(attempts)s::integer[]::text[]) AS map
), released AS (
    UPDATE {schema}.jobs AS j
    SET state = CASE WHEN j.cancel_requested_at IS NOT NULL THEN 'cancelled' ELSE 'queued' END,
        finished_at = CASE WHEN j.cancel_requested_at IS NOT NULL THEN now() END,
        run_at = now(), lease_expires_at = NULL, worker_id = NULL,
        started_at = CASE WHEN j.cancel_requested_at IS NOT NULL THEN j.started_at END
    FROM mine, held
    WHERE j.id = mine.id AND (held.map ->> mine.id::text)::integer = mine.attempt
    RETURNING j.id, j.queue, j.state
)
-- (a job whose cancellation was asked for but not yet heard ends cancelled, and whoever
-- waits for its result hears it on {done_channel})
SELECT id, CASE WHEN state = 'queued' THEN pg_notify('{channel}', queue)
                ELSE pg_notify('{done_channel}', id::text) END, state
FROM released;

-- name: job_release_unknown_fenced
-- A worker claimed jobs of a task its app does not know (an old worker during a rolling
-- deploy): hand them back without using an attempt (counters and errors untouched, as
-- the shutdown release; attempt, the claim counter, still moves on next claim, so the old
-- token stays dead), due again after base * 2^(claims that used no attempt - 1) seconds,
-- at most cap: a worker that knows the task takes them soon, and workers that do not
-- know it do not spin on them. A job whose cancellation was asked for ends cancelled.
-- No NOTIFY: the jobs are not due yet (idle workers wake for them by
-- job_seconds_to_next). noted: the (queue, task) goes into unknown_tasks (first
-- hand-back wins, so "since" is when the wait began) for pgqueue status and the
-- UnknownTasks sweep, in name order (two workers noting the same names cannot deadlock).
WITH held AS MATERIALIZED (  -- attempts looked up as in job_heartbeat_fenced
    SELECT jsonb_object(%(ids)s::bigint[]::text[], %(attempts)s::integer[]::text[]) AS map
), released AS (
    UPDATE {schema}.jobs AS j
    SET state = CASE WHEN j.cancel_requested_at IS NOT NULL THEN 'cancelled' ELSE 'queued' END,
        finished_at = CASE WHEN j.cancel_requested_at IS NOT NULL THEN now() END,
        run_at = now() + make_interval(secs => least(
            %(base)s::float8 * power(2, least(greatest(
                j.attempt - j.error_count - j.lost_count - 1, 0), 20)),
            %(cap)s::float8)),
        lease_expires_at = NULL, worker_id = NULL,
        started_at = CASE WHEN j.cancel_requested_at IS NOT NULL THEN j.started_at END
    FROM held
    WHERE j.id = ANY(%(ids)s::bigint[]) AND j.worker_id = %(worker_id)s
      AND coalesce(j.state, '') = 'running'  -- by id, never by jobs_lease_idx: see above
      AND (held.map ->> j.id::text)::integer = j.attempt
    RETURNING j.id, j.queue, j.task, j.state
), noted AS (
    INSERT INTO {schema}.unknown_tasks (queue, task)
    SELECT DISTINCT queue, task FROM released WHERE state = 'queued' ORDER BY queue, task
    ON CONFLICT (queue, task) DO NOTHING
)
SELECT id, CASE WHEN state = 'cancelled' THEN pg_notify('{done_channel}', id::text) END, state
FROM released;

-- name: unknown_task_sweep
-- Maintenance (UnknownTasks), one worker at a time (advisory lock in the statement, as
-- the reaper). A task is known on a queue while a row of workers (a live worker: the
-- reaper deletes dead ones' rows) has both. known: unknown_tasks rows a live worker now
-- knows are deleted (what was handed back will run). stale: rows nobody knows since
-- longer than the timeout, only if this worker has itself run that long (may_fail), so
-- that after the whole fleet was down every version gets the timeout to come back.
-- victims: their queued jobs that are due or were handed back (a job scheduled ahead
-- waits for its time), through that queue's claim index, SKIP LOCKED and rechecked on
-- the newest row version (READ COMMITTED): a job a knowing worker just claimed is
-- 'running' and never failed here. They end failed, kind unknown_task, counters
-- untouched (they never ran). settled: when a pass fails fewer than limit jobs, every
-- job of its stale rows is done and the rows go (a later hand-back starts a new wait).
WITH lock AS MATERIALIZED (
    SELECT pg_try_advisory_xact_lock(hashtext(%(key)s)) AS locked
), known AS (
    DELETE FROM {schema}.unknown_tasks AS u
    WHERE (SELECT locked FROM lock)
      AND EXISTS (SELECT 1 FROM {schema}.workers AS w
                  WHERE u.queue = ANY(w.queues) AND u.task = ANY(w.tasks))
), stale AS MATERIALIZED (
    SELECT u.queue, u.task FROM {schema}.unknown_tasks AS u
    WHERE (SELECT locked FROM lock) AND %(may_fail)s::boolean
      AND u.since < now() - make_interval(secs => %(timeout)s::float8)
      AND NOT EXISTS (SELECT 1 FROM {schema}.workers AS w
                      WHERE u.queue = ANY(w.queues) AND u.task = ANY(w.tasks))
), victims AS (
    SELECT v.id FROM stale CROSS JOIN LATERAL (
        SELECT j.id FROM {schema}.jobs AS j
        WHERE j.state = 'queued' AND j.queue = stale.queue AND j.task = stale.task
          AND (j.run_at <= now() OR j.attempt > j.error_count + j.lost_count)
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ) AS v
    LIMIT %(limit)s
), failed AS (
    UPDATE {schema}.jobs AS j
    SET state = 'failed', finished_at = now(), lease_expires_at = NULL, worker_id = NULL,
        errors = j.errors || jsonb_build_array(jsonb_build_object(
            'attempt', j.attempt, 'kind', 'unknown_task', 'at', now(),
            'message', format('no live worker of queue %%s has known the task %%s for %%s s '
                              '(--unknown-task-timeout): no deployed app registers it; '
                              'retry the job once a worker that knows it runs', j.queue,
                              j.task, round(%(timeout)s::numeric, 1))))
    FROM victims
    WHERE j.id = victims.id AND j.state = 'queued'
    RETURNING j.id, j.queue, j.task
), settled AS (
    DELETE FROM {schema}.unknown_tasks AS u
    USING stale
    WHERE u.queue = stale.queue AND u.task = stale.task
      AND (SELECT count(*) FROM failed) < %(limit)s
)
SELECT id, queue, task, pg_notify('{done_channel}', id::text) FROM failed;

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
-- (a job that ends failed or cancelled is told on {done_channel}: someone may wait for it)
SELECT id, state, CASE WHEN state = 'queued' THEN pg_notify('{channel}', queue)
                       ELSE pg_notify('{done_channel}', id::text) END
FROM reaped;

-- name: job_dependencies_sweep
-- Maintenance: waiting jobs that should have moved on but did not: a worker died between
-- finishing a job and resolving its dependents, or a dependent was enqueued in a
-- caller's transaction that committed just as its last dependency finished. One worker
-- at a time (advisory lock inside the statement, as the reaper). stuck is found without
-- locking anything (most waiting jobs wait for good reason); only their dependencies go
-- to resolve_dependents, which locks and checks again. A missing (pruned) dependency
-- counts as succeeded, as in resolve_dependents.
WITH lock AS MATERIALIZED (
    SELECT pg_try_advisory_xact_lock(hashtext(%(key)s)) AS locked
), stuck AS MATERIALIZED (
    SELECT w.depends_on FROM {schema}.jobs AS w
    WHERE w.state = 'waiting' AND (SELECT locked FROM lock)
      AND (NOT EXISTS (SELECT 1 FROM {schema}.jobs AS d
                       WHERE d.id = ANY(w.depends_on) AND d.state <> 'succeeded')
           OR EXISTS (SELECT 1 FROM {schema}.jobs AS d
                      WHERE d.id = ANY(w.depends_on) AND d.state IN ('failed', 'cancelled')))
    LIMIT %(limit)s
), deps AS (
    SELECT array_agg(DISTINCT d.id) AS ids
    FROM stuck CROSS JOIN LATERAL unnest(stuck.depends_on) AS d(id)
)
SELECT (SELECT count(*) FROM stuck) AS stuck,
       CASE WHEN deps.ids IS NULL THEN 0 ELSE {schema}.resolve_dependents(deps.ids) END
           AS moved
FROM deps;

-- name: worker_heartbeat
-- Registers the worker on its first beat and touches it on every later one; an upsert,
-- so a live worker whose row was pruned (a long pause) reappears on its next beat, with
-- the task names its app knows (rolling deploys: see unknown_task_sweep).
INSERT INTO {schema}.workers (id, host, pid, queues, concurrency, tasks)
VALUES (%(id)s, %(host)s, %(pid)s, %(queues)s::text[], %(concurrency)s, %(tasks)s::text[])
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
-- One range scan per state on jobs_finished_idx (state, finished_at), and one on
-- succeeded_jobs_finished_idx: each cutoff bounds its scan, so a pass costs what it
-- deletes, not the size of the history. (Succeeded jobs live in succeeded_jobs; the ones
-- in jobs were completed in place by a worker older than migration 0004.)
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
), old_succeeded AS (
    SELECT id FROM {schema}.succeeded_jobs
    WHERE finished_at < now() - make_interval(secs => %(keep_succeeded)s::float8)
    ORDER BY finished_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM {schema}.jobs AS j
    WHERE j.id = ANY(ARRAY(SELECT id FROM old))
    RETURNING j.state
), gone_succeeded AS (
    DELETE FROM {schema}.succeeded_jobs AS j
    WHERE j.id = ANY(ARRAY(SELECT id FROM old_succeeded))
    RETURNING j.state
)
SELECT state FROM gone UNION ALL SELECT state FROM gone_succeeded;

-- name: jobs_vacuum_due
-- Which of the two job tables need a vacuum that autovacuum is not giving them:
-- autovacuum is off (some servers run that way) or has not visited while dead rows piled
-- up. jobs gets its dead rows from every claim and completion, succeeded_jobs from the
-- pruner. One row per table: relname, due, n_dead_tup, n_live_tup.
SELECT s.relname::text AS relname,
       s.n_dead_tup > %(min_dead)s
       AND s.n_dead_tup > %(dead_fraction)s * GREATEST(s.n_live_tup, 1)
       AND (current_setting('autovacuum') = 'off'
            OR greatest(s.last_autovacuum, s.last_vacuum) IS NULL
            OR greatest(s.last_autovacuum, s.last_vacuum)
               < now() - make_interval(secs => %(stale_after)s::float8)) AS due,
       s.n_dead_tup, s.n_live_tup
FROM pg_stat_user_tables AS s
WHERE s.relid IN ('{schema}.jobs'::regclass, '{schema}.succeeded_jobs'::regclass)
ORDER BY s.relname;

-- name: jobs_vacuum_allowed
-- Whether this role may VACUUM both job tables, and whether autovacuum is on. A VACUUM
-- without the right does not fail: it warns and skips the table, so the vacuumer asks
-- first. Up to PostgreSQL 16 the right is the table's owner's (or a member's of the owner
-- role, a superuser's, the database owner's); from 17 it is MAINTAIN, which the owner
-- holds and can grant. (CASE keeps PostgreSQL 16 and older from parsing 'MAINTAIN'.)
SELECT bool_and(CASE WHEN current_setting('server_version_num')::integer >= 170000
                     THEN has_table_privilege(c.oid, 'MAINTAIN')
                     ELSE pg_has_role(c.relowner, 'USAGE')
                          OR pg_has_role((SELECT d.datdba FROM pg_database AS d
                                          WHERE d.datname = current_database()), 'USAGE')
                END) AS allowed,
       current_setting('autovacuum') = 'on' AS autovacuum
FROM pg_class AS c
WHERE c.oid IN ('{schema}.jobs'::regclass, '{schema}.succeeded_jobs'::regclass);

-- name: jobs_vacuum_lock
-- Session-level: VACUUM cannot run inside a transaction, so no xact lock here. Behind a
-- transaction pooler a session lock would stay on whichever server connection took it,
-- so there the vacuumer takes none and relies on SKIP_LOCKED below (a table another
-- worker is vacuuming is skipped, not waited for).
SELECT pg_try_advisory_lock(hashtext(%(key)s)) AS locked;

-- name: jobs_vacuum_unlock
SELECT pg_advisory_unlock(hashtext(%(key)s));

-- name: jobs_vacuum
VACUUM (ANALYZE, SKIP_LOCKED) {schema}.jobs;

-- name: succeeded_jobs_vacuum
VACUUM (ANALYZE, SKIP_LOCKED) {schema}.succeeded_jobs;

-- name: queue_stats_list
SELECT queue, queued, scheduled, running, failed, oldest_queued_age_seconds,
       finished_last_minute, paused, waiting, max_running, max_running_per_group,
       rate_limit, rate_period, priority_aging
FROM {schema}.queue_stats
ORDER BY queue;

-- name: unknown_task_list
-- pgqueue status: per queue, tasks whose jobs were handed back by workers that do not
-- know them and that no live worker of the queue knows now (since: the first
-- hand-back), with their queued jobs (on that queue's claim indexes); and tasks of jobs
-- that failed unknown_task and are still in the dead letter (jobs_finished_idx).
WITH pending AS (
    SELECT u.queue, u.task, u.since FROM {schema}.unknown_tasks AS u
    WHERE NOT EXISTS (SELECT 1 FROM {schema}.workers AS w
                      WHERE u.queue = ANY(w.queues) AND u.task = ANY(w.tasks))
), dead AS (
    SELECT j.queue, j.task, count(*) AS failed FROM {schema}.jobs AS j
    WHERE j.state = 'failed' AND j.errors -> -1 ->> 'kind' = 'unknown_task'
    GROUP BY j.queue, j.task
)
SELECT coalesce(p.queue, d.queue) AS queue, coalesce(p.task, d.task) AS task, p.since,
       round(extract(epoch FROM now() - p.since)::numeric, 3) AS unknown_seconds,
       coalesce((SELECT count(*) FROM {schema}.jobs AS j
                 WHERE j.state = 'queued' AND j.queue = p.queue AND j.task = p.task), 0)
           AS queued,
       coalesce(d.failed, 0) AS failed
FROM pending AS p FULL JOIN dead AS d ON d.queue = p.queue AND d.task = p.task
ORDER BY 1, 2;

-- name: job_running_list
-- app.admin.running(): the running_jobs view (migration 0009 added the progress columns).
SELECT * FROM {schema}.running_jobs ORDER BY started_at, id;

-- name: job_list
-- Newest first; each filter is optional (NULL matches everything). run_at clamped as
-- in job_get.
SELECT id, queue, task, args, kwargs, state, priority, attempt, max_attempts,
       LEAST(GREATEST(run_at, '0001-02-01+00'), '9999-01-01+00') AS run_at, created_at,
       finished_at, errors -> -1 ->> 'message' AS last_error, progress
FROM {schema}.all_jobs
WHERE (%(queue)s::text IS NULL OR queue = %(queue)s)
  AND (%(state)s::text IS NULL OR state = %(state)s)
  AND (%(scheduled)s::boolean IS NULL OR (run_at > now()) = %(scheduled)s)
  AND (%(task)s::text IS NULL OR task = %(task)s)
ORDER BY id DESC
LIMIT %(limit)s;

-- name: job_make_due
-- app.drain(with_scheduled=True): queued jobs of these queues that are scheduled for
-- later (retries in their backoff too) become due now, once, when the drain starts; a
-- backoff set during the drain is left alone. A test helper: no running job is touched.
UPDATE {schema}.jobs SET run_at = now()
WHERE state = 'queued' AND run_at > now() AND queue = ANY(%(queues)s::text[]);

-- name: job_queues_pending
-- app.drain() without queues: every queue that has a job not started yet.
SELECT DISTINCT queue FROM {schema}.jobs WHERE state IN ('queued', 'waiting');

-- name: job_list_pending
-- pgqueue.testing.enqueued_jobs(): jobs not started yet (waiting, queued, scheduled),
-- oldest first; each filter is optional (NULL matches everything).
SELECT id, queue, task, args, kwargs, state, priority,
       LEAST(GREATEST(run_at, '0001-02-01+00'), '9999-01-01+00') AS run_at,
       run_at > now() AS scheduled, max_attempts, dedupe_key, group_key, depends_on
FROM {schema}.jobs
WHERE state IN ('queued', 'waiting')
  AND (%(task)s::text IS NULL OR task = %(task)s)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s)
ORDER BY id;

-- name: job_list_by_ids
-- app.drain()'s report: where the jobs it ran stand now.
SELECT id, state, attempt, result, errors -> -1 AS last_error
FROM {schema}.all_jobs WHERE id = ANY(%(ids)s::bigint[]);

-- name: job_retry
SELECT {schema}.retry_job(%(id)s) AS retried;

-- name: job_retry_failed
SELECT {schema}.retry_failed(%(queue)s, %(task)s) AS retried;

-- name: job_cancel
SELECT {schema}.cancel_job(%(id)s) AS state;

-- name: job_delete
SELECT {schema}.delete_job(%(id)s) AS state;

-- name: queue_pause
SELECT {schema}.pause_queue(%(queue)s);

-- name: queue_set_limits
SELECT {schema}.set_queue_limits(%(queue)s, %(max_running)s, %(max_running_per_group)s,
                                 %(rate_limit)s, %(rate_period)s, %(priority_aging)s);

-- name: queue_resume
SELECT {schema}.resume_queue(%(queue)s) AS resumed;

-- name: queue_known
-- A queue is known if it has jobs or a row in the queues table.
SELECT EXISTS (SELECT 1 FROM {schema}.queues WHERE name = %(queue)s)
    OR EXISTS (SELECT 1 FROM {schema}.all_jobs WHERE queue = %(queue)s) AS known;

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

-- Periodic jobs
-- One row per schedule in {schema}.periodic. Every worker of the app runs the scheduler
-- (pgqueue/maintenance/scheduler.py); last_tick only moves forward, and only through
-- periodic_advance's compare-and-set, which is what makes it one job per tick.

-- name: periodic_state
-- One row per schedule the worker knows (NULLs for one without a row yet), each with the
-- database's clock: ticks are judged on one clock for all workers, not on theirs.
SELECT now() AS now, n.name, p.schedule, p.last_tick
FROM unnest(%(names)s::text[]) AS n(name)
LEFT JOIN {schema}.periodic AS p ON p.name = n.name;

-- name: periodic_register
-- A new schedule starts at its latest tick at or before now, so its first job is for
-- the next tick. Workers registering at once: one insert wins, the others do nothing.
INSERT INTO {schema}.periodic (name, schedule, last_tick)
VALUES (%(name)s, %(schedule)s, %(tick)s)
ON CONFLICT (name) DO NOTHING;

-- name: periodic_reschedule
-- The code's schedule differs from the stored one (a deploy changed it): store it and go
-- on from now without enqueueing the ticks in between. last_tick never moves back, so a
-- tick that has its job never gets another. Matching the old text makes one of several
-- workers that see the change do it.
UPDATE {schema}.periodic
SET schedule = %(schedule)s, last_tick = GREATEST(last_tick, %(tick)s), updated_at = now()
WHERE name = %(name)s AND schedule = %(old_schedule)s;

-- name: periodic_advance
-- Exactly one job per tick. One statement (so one transaction, and no transaction left
-- open between round trips) moves last_tick from the value this worker read (prev) to
-- the new one, and inserts the ticks' jobs only if that move happened. Workers racing
-- for the same tick all run the UPDATE: the first locks the row; the others wait for its
-- commit, then PostgreSQL re-checks their WHERE against the committed row (READ
-- COMMITTED), finds last_tick <> prev and updates nothing, so their INSERT reads no row
-- from "advanced" and adds no job. If the statement fails, nothing moved: the tick stays
-- due for the next pass. The schedule text in the WHERE keeps a worker running older
-- code from enqueueing a tick of a schedule that was just replaced. Each job's dedupe_key
-- 'periodic:<name>:<tick>' names its tick for good (run_at is the tick too, until a retry
-- moves it); DO NOTHING skips a job whose key an unfinished job holds (nothing else should
-- ever hold it). The INSERT fires the jobs NOTIFY trigger.
WITH advanced AS (
    UPDATE {schema}.periodic
    SET last_tick = %(tick)s, updated_at = now()
    WHERE name = %(name)s AND last_tick = %(prev)s AND schedule = %(schedule)s
    RETURNING name
), inserted AS (
    INSERT INTO {schema}.jobs (queue, task, args, kwargs, priority, run_at, max_attempts,
                               dedupe_key)
    SELECT %(queue)s::text, %(task)s::text, %(args)s::jsonb, %(kwargs)s::jsonb,
           %(priority)s::smallint, t.tick, %(max_attempts)s::integer, t.key
    FROM advanced
    CROSS JOIN unnest(%(ticks)s::timestamptz[], %(keys)s::text[]) AS t(tick, key)
    ORDER BY t.tick
    ON CONFLICT DO NOTHING
    RETURNING id
)
SELECT (SELECT count(*) FROM advanced) > 0 AS advanced,
       (SELECT array_agg(id ORDER BY id) FROM inserted) AS job_ids;

-- name: periodic_list
SELECT name, schedule, last_tick, updated_at FROM {schema}.periodic ORDER BY name;

-- name: job_age_priorities
-- Priority aging (queues.priority_aging): once per aging period per queue, fleet-wide,
-- due jobs that have waited at least that long behind higher-priority work of their
-- queue move up one step, so a low-priority job still runs under a constant stream of
-- high-priority ones (after about (top - its priority) periods).
-- due: the compare-and-set on priority_aged_at picks the queues whose pass is due; a
-- worker that comes a moment later finds the stamp fresh and does nothing (no double
-- aging however many workers run this). top: the queue's best due priority (ungrouped
-- jobs by jobs_claim_idx order; grouped ones by max over their index). aged: jobs below
-- it, highest first, at most LIMIT per queue and pass, SKIP LOCKED (a job being claimed
-- is left alone). A job never passes the top, so priorities stay in smallint range.
WITH due AS (
    UPDATE {schema}.queues
    SET priority_aged_at = now()
    WHERE name = ANY(%(queues)s::text[]) AND priority_aging IS NOT NULL AND paused_at IS NULL
      AND (priority_aged_at IS NULL
           OR priority_aged_at <= now() - make_interval(secs => priority_aging))
    RETURNING name, priority_aging
), top AS (
    SELECT due.name, due.priority_aging, greatest(
        (SELECT priority FROM {schema}.jobs
         WHERE state = 'queued' AND group_key IS NULL AND queue = due.name AND run_at <= now()
         ORDER BY priority DESC, run_at, id LIMIT 1),
        (SELECT max(priority) FROM {schema}.jobs
         WHERE state = 'queued' AND group_key IS NOT NULL AND queue = due.name
           AND run_at <= now())) AS top
    FROM due
), aged_plain AS (
    SELECT c.id FROM top CROSS JOIN LATERAL (
        SELECT id FROM {schema}.jobs
        WHERE state = 'queued' AND group_key IS NULL AND queue = top.name
          AND priority < top.top
          AND run_at <= now() - make_interval(secs => top.priority_aging)
        ORDER BY priority DESC, run_at, id
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ) AS c
), aged_grouped AS (
    SELECT c.id FROM top CROSS JOIN LATERAL (
        SELECT id FROM {schema}.jobs
        WHERE state = 'queued' AND group_key IS NOT NULL AND queue = top.name
          AND priority < top.top
          AND run_at <= now() - make_interval(secs => top.priority_aging)
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ) AS c
)
UPDATE {schema}.jobs AS j SET priority = j.priority + 1
WHERE j.id = ANY(ARRAY(SELECT id FROM aged_plain UNION ALL SELECT id FROM aged_grouped))
RETURNING j.id;

-- Connection poolers (pgqueue/pooler.py) -----------------------------------------------

-- name: server_probe_option
-- Did the startup option -c pgqueue.probe=on arrive? A direct connection says 'on'; a
-- pooler told to ignore the options parameter drops it, and this reads NULL (missing_ok).
SELECT current_setting('pgqueue.probe', true);

-- name: session_settings_local
-- The worker's session settings for one transaction, behind a transaction pooler where a
-- session setting would stay on a server connection someone else gets next: jit off (the
-- flow claim's recursive scan looks expensive on a big queue and was JIT-compiled for
-- 700 ms), lock_timeout 10 s (a write stuck behind a row an open psql session holds gives
-- up and is retried), synchronous_commit off for --fast-claims (NULL keeps the server's).
-- plan_cache_mode is not needed there: nothing is prepared behind a pooler.
SELECT set_config('jit', 'off', true),
       set_config('lock_timeout', '10s', true),
       set_config('synchronous_commit',
                  coalesce(%(synchronous_commit)s::text, current_setting('synchronous_commit')),
                  true);

-- name: server_backend_pid
-- Which server process answers: through a pooler in transaction mode, whichever is free.
SELECT pg_backend_pid();

-- name: notify_probe
-- A notification to see whether LISTEN works on this connection path (see pooler.py).
SELECT pg_notify(%(channel)s, %(token)s);

-- Dashboard (pgqueue/dashboard/): the reads its pages make; its writes go through the
-- same functions as the CLI (app.admin).

-- name: job_page
-- The jobs page, newest first, one page after the id "before" (keyset pagination: no
-- OFFSET, so page 10,000 costs what page 1 costs). Two branches instead of the all_jobs
-- view: each walks its own table's primary key backwards from "before" and stops at the
-- LIMIT, and the outer ORDER BY merges at most 2 x limit rows. coalesce() rather than
-- "before IS NULL OR id < before" keeps id < ... an index condition in a generic plan
-- (psycopg prepares a query run 5 times). A branch that cannot match the state filter is
-- cut by a one-time filter on the parameters before it touches its table; without it the
-- jobs branch would scan all of jobs for the state 'succeeded' it never holds (rows a
-- worker from before 0004 completed in place are not listed by that filter). Other
-- filters are row filters on that walk: a rare queue, task or search term means more
-- rows read per page (bounded by the caller's statement_timeout).
SELECT * FROM (
    (SELECT id, queue, task, state, priority, attempt, max_attempts,
            LEAST(GREATEST(run_at, '0001-02-01+00'), '9999-01-01+00') AS run_at, created_at,
            started_at, finished_at, worker_id, errors -> -1 ->> 'message' AS last_error,
            args, kwargs
     FROM {schema}.jobs
     WHERE (%(state)s::text IS NULL OR %(state)s::text <> 'succeeded')
       AND id < coalesce(%(before)s::bigint, 9223372036854775807)
       AND (%(state)s::text IS NULL OR state = %(state)s::text)
       AND (%(scheduled)s::boolean IS NULL OR (run_at > now()) = %(scheduled)s::boolean)
       AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
       AND (%(task)s::text IS NULL OR task = %(task)s::text)
       AND created_at >= coalesce(%(since)s::timestamptz, '-infinity')
       AND created_at < coalesce(%(until)s::timestamptz, 'infinity')
       AND (%(search)s::text IS NULL
            OR args::text ILIKE %(search)s::text OR kwargs::text ILIKE %(search)s::text)
     ORDER BY id DESC
     LIMIT %(limit)s)
    UNION ALL
    (SELECT id, queue, task, state, priority, attempt, max_attempts,
            LEAST(GREATEST(run_at, '0001-02-01+00'), '9999-01-01+00') AS run_at, created_at,
            started_at, finished_at, worker_id, errors -> -1 ->> 'message' AS last_error,
            args, kwargs
     FROM {schema}.succeeded_jobs
     WHERE (%(state)s::text IS NULL OR %(state)s::text = 'succeeded')
       AND %(scheduled)s::boolean IS NULL
       AND id < coalesce(%(before)s::bigint, 9223372036854775807)
       AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
       AND (%(task)s::text IS NULL OR task = %(task)s::text)
       AND created_at >= coalesce(%(since)s::timestamptz, '-infinity')
       AND created_at < coalesce(%(until)s::timestamptz, 'infinity')
       AND (%(search)s::text IS NULL
            OR args::text ILIKE %(search)s::text OR kwargs::text ILIKE %(search)s::text)
     ORDER BY id DESC
     LIMIT %(limit)s)
) AS page
ORDER BY id DESC
LIMIT %(limit)s;

-- name: job_history_minutes
-- The overview's charts: per minute of the last hour, jobs that succeeded and failed,
-- and the mean wait (started_at - run_at: due until claimed) of at most 50 of the jobs
-- that succeeded in that minute. Counts walk succeeded_jobs_finished_idx and
-- jobs_finished_idx over the hour (index-only when the visibility map allows); the
-- wait is sampled so that a busy hour (millions of jobs) costs 60 x 50 row reads, not a
-- read of every row.
SELECT m.minute,
       (SELECT count(*) FROM {schema}.succeeded_jobs AS s
        WHERE s.finished_at >= m.minute AND s.finished_at < m.minute + interval '1 minute'
          AND (%(queue)s::text IS NULL OR s.queue = %(queue)s::text)) AS succeeded,
       (SELECT count(*) FROM {schema}.jobs AS f
        WHERE f.state = 'failed'
          AND f.finished_at >= m.minute AND f.finished_at < m.minute + interval '1 minute'
          AND (%(queue)s::text IS NULL OR f.queue = %(queue)s::text)) AS failed,
       (SELECT round(avg(extract(epoch FROM w.started_at - w.run_at))::numeric, 3)
        FROM (SELECT s.started_at, s.run_at FROM {schema}.succeeded_jobs AS s
              WHERE s.finished_at >= m.minute
                AND s.finished_at < m.minute + interval '1 minute'
                AND (%(queue)s::text IS NULL OR s.queue = %(queue)s::text)
              ORDER BY s.finished_at DESC
              LIMIT 50) AS w) AS wait_seconds
FROM generate_series(date_trunc('minute', now()) - interval '59 minutes',
                     date_trunc('minute', now()), interval '1 minute') AS m(minute)
ORDER BY m.minute;

-- name: job_dead_groups
-- Dead letters grouped by their last error: queue, task, kind and the message's first
-- line (cut at 200 characters, so a message that names the job still groups when the
-- start is shared). Reads the failed jobs only (jobs_finished_idx).
SELECT queue, task, coalesce(errors -> -1 ->> 'kind', 'error') AS kind,
       left(split_part(coalesce(errors -> -1 ->> 'message', ''), E'\n', 1), 200) AS message,
       count(*) AS jobs, min(finished_at) AS first_at, max(finished_at) AS last_at,
       max(id) AS latest_id
FROM {schema}.jobs
WHERE state = 'failed'
GROUP BY 1, 2, 3, 4
ORDER BY jobs DESC, last_at DESC
LIMIT %(limit)s;

-- name: job_dead_group_ids
-- The ids of one group of job_dead_groups (the same expressions), oldest first.
SELECT id FROM {schema}.jobs
WHERE state = 'failed' AND queue = %(queue)s AND task = %(task)s
  AND coalesce(errors -> -1 ->> 'kind', 'error') = %(kind)s
  AND left(split_part(coalesce(errors -> -1 ->> 'message', ''), E'\n', 1), 200) = %(message)s
ORDER BY id
LIMIT %(limit)s;

-- name: job_running_by_worker
-- The workers page: what each worker runs (jobs_lease_idx holds exactly these rows).
SELECT id, queue, task, worker_id, attempt, max_attempts, started_at, run_seconds,
       lease_left_seconds, cancel_requested
FROM {schema}.running_jobs
ORDER BY worker_id, started_at
LIMIT %(limit)s;

-- name: job_dependencies
-- A job's page: the jobs it runs after (by primary key in both tables).
SELECT id, task, state FROM {schema}.all_jobs WHERE id = ANY(%(ids)s::bigint[]) ORDER BY id;

-- name: job_dependents_waiting
-- A job's page: jobs still waiting for it (jobs_depends_on_idx, a GIN index on the
-- waiting jobs only; those that already left 'waiting' are not listed).
SELECT id, task, state FROM {schema}.jobs
WHERE state = 'waiting' AND depends_on @> ARRAY[%(id)s::bigint]
ORDER BY id
LIMIT 100;
