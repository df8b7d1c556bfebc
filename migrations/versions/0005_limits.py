"""Limits: the jobs table and the SQL enqueue() refuse what the Python API refuses.

The table's CHECKs are the hard ceilings (``pgqueue/limits.py``): an ``App`` may raise
its limits up to them, so the table must take whatever such an App sends. The SQL
``enqueue()`` enforces the defaults, as an App with default limits does.

- ``jobs_run_at_check``: run_at finite and before 2200 (App and enqueue(): at most 100
  years ahead). An infinite run_at broke every reader that subtracts timestamps.
- ``jobs_max_attempts_max_check``: at most 1,000,000 (``jobs_max_attempts_check`` has >= 1).
- ``jobs_dedupe_key_check``: 1..500 characters (a 6 KB dedupe key used to fail deep in
  the unique btree index; group keys have had ``jobs_group_key_check`` since 0003).
- ``jobs_depends_on_check``: no NULL ids, at most 10,000.
- ``jobs_payload_size_check``: args + kwargs at most 8 MiB as stored (jsonb binary, read
  from the datum's header: no JSON walk). The App's ceiling is 1 MiB of JSON text, and
  jsonb takes at most ~6x the text (``[0,0,...]``: 2 bytes a number as text, 12 stored).
- ``jobs_payload_depth_check``: no container nested deeper than 200 levels. Walking the
  JSON (jsonb_path_exists, in C) is skipped for a value under 1,500 bytes stored
  uncompressed: 201 nested containers take at least 8 bytes each. So a plain job (the
  COPY path inserts 20,000 in a statement) pays two header reads, not a walk. A CHECK
  is re-evaluated on every UPDATE of the row (claim, heartbeat, retry): a job with
  arguments over 1,500 bytes pays the walk there too.

NUL and lone surrogates need no constraint: PostgreSQL's text and jsonb cannot hold them.
Names already had anchored regexes (PostgreSQL's ``$`` is the end of the string).

Existing rows: an unfinished job (waiting, queued, running) that breaks a new constraint
is failed first, with an error entry of kind ``refused`` naming migration 0005 (kept for
the operator to see in ``jobs show``; nothing is deleted). A run_at out of range (on any
row) becomes now(): it could not be loaded by Python (psycopg refuses infinity). The constraints are then
added NOT VALID (no long lock, existing rows not checked) and validated one by one; if a
finished row (failed or cancelled) still breaks one, that constraint stays NOT VALID,
with a WARNING: new and updated rows are checked all the same. Readers that subtract
timestamps (``queue_stats``) are guarded against an infinite run_at either way.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import context, op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_CONTAINER = '(@.type() == "array" || @.type() == "object")'

#: (name, CHECK expression) of the constraints this revision adds to jobs.
CHECKS = (
    (
        "jobs_run_at_check",
        "isfinite(run_at) AND run_at >= '1970-01-01 00:00:00+00' "
        "AND run_at < '2200-01-01 00:00:00+00'",
    ),
    ("jobs_max_attempts_max_check", "max_attempts <= 1000000"),
    ("jobs_dedupe_key_check", "dedupe_key IS NULL OR length(dedupe_key) BETWEEN 1 AND 500"),
    (
        "jobs_depends_on_check",
        "depends_on IS NULL OR (cardinality(depends_on) <= 10000 "
        "AND array_position(depends_on, NULL) IS NULL)",
    ),
    # The stored size (a look at the value's header), except for a value that arrives
    # compressed (INSERT ... SELECT from a table that holds it so): its stored size says
    # nothing of what a worker would decode, so its text is measured.
    (
        "jobs_payload_size_check",
        "CASE WHEN pg_column_compression(args) IS NULL THEN pg_column_size(args) "
        "ELSE octet_length(args::text) END + "
        "CASE WHEN pg_column_compression(kwargs) IS NULL THEN pg_column_size(kwargs) "
        "ELSE octet_length(kwargs::text) END <= 8388608",
    ),
    (
        "jobs_payload_depth_check",
        "CASE WHEN pg_column_size(args) < 1500 AND pg_column_size(kwargs) < 1500 "
        "AND pg_column_compression(args) IS NULL AND pg_column_compression(kwargs) IS NULL "
        "THEN true "
        f"ELSE NOT jsonb_path_exists(args, 'strict $.**{{200}} ? {_CONTAINER}') "
        f"AND NOT jsonb_path_exists(kwargs, 'strict $.**{{200}} ? {_CONTAINER}') END",
    ),
)

FAIL_EXISTING = """
-- Unfinished jobs that break a limit are failed (not deleted), saying why.
UPDATE {s}.jobs
SET state = 'failed', finished_at = now(), lease_expires_at = NULL,
    run_at = CASE WHEN {run_at_ok} THEN run_at ELSE now() END,
    errors = errors || jsonb_build_array(jsonb_build_object(
        'attempt', attempt, 'kind', 'refused', 'at', now(),
        'message', 'failed by migration 0005: the job breaks a limit pgqueue now enforces '
                   || '(run_at, max_attempts, dedupe_key, depends_on, or the size or '
                   || 'depth of its arguments); see "What pgqueue refuses" in the README'))
WHERE state IN ('waiting', 'queued', 'running') AND NOT ({all_checks});
-- An out-of-range run_at on a finished row: now (it is never due again anyway), so that
-- jobs_run_at_check validates and readers can load the row.
UPDATE {s}.jobs SET run_at = now() WHERE NOT {run_at_ok};
"""

ADD = "ALTER TABLE {s}.jobs ADD CONSTRAINT {name} CHECK ({expr}) NOT VALID;\n"

VALIDATE = """
DO $$
BEGIN
    ALTER TABLE {s}.jobs VALIDATE CONSTRAINT {name};
EXCEPTION WHEN check_violation THEN
    RAISE WARNING 'pgqueue 0005: finished jobs break {name}; it stays NOT VALID (new and updated rows are checked)';
END
$$;
"""

DDL = """
-- Enqueue from plain SQL or a trigger; the same signature as 0003, now with the limits
-- of the Python API at their defaults (pgqueue/limits.py). Every refusal raises
-- invalid_parameter_value (22023) naming the limit; nothing is written.
CREATE OR REPLACE FUNCTION {s}.enqueue(
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
    first_state text;
    payload_bytes integer;
BEGIN
    IF task IS NULL OR length(task) > 200 OR task !~ '^[A-Za-z_][A-Za-z0-9_.:-]*$' THEN
        RAISE EXCEPTION 'enqueue: invalid task name %: start with a letter or underscore, then letters, digits, _ . : -; at most 200 characters', quote_nullable(task)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF queue IS NULL OR length(queue) > 63 OR queue !~ '^[A-Za-z_][A-Za-z0-9_.-]*$' THEN
        RAISE EXCEPTION 'enqueue: invalid queue name %: start with a letter or underscore, then letters, digits, _ . -; at most 63 characters', quote_nullable(queue)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF arguments IS NULL OR jsonb_typeof(arguments) NOT IN ('object', 'array') THEN
        RAISE EXCEPTION 'enqueue: arguments must be a JSON object (keyword arguments) or array (positional), got %', coalesce(jsonb_typeof(arguments), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Measured as PostgreSQL prints it (a space after each , and :), a little more than
    -- the compact JSON Python measures: near the limit SQL refuses first.
    payload_bytes := octet_length(arguments::text);
    IF payload_bytes > {max_payload} THEN
        RAISE EXCEPTION 'enqueue: the arguments are % bytes of JSON, more than the limit of {max_payload} (max_payload_bytes); pass a reference instead of the data', payload_bytes
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF payload_bytes >= {max_depth} * 2
       AND jsonb_path_exists(arguments, 'strict $.**{{{max_depth}}} ? {container}') THEN
        RAISE EXCEPTION 'enqueue: the arguments nest deeper than {max_depth} levels (max_depth; the arguments array or object is level 1)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF priority IS NULL OR priority NOT BETWEEN -32768 AND 32767 THEN
        RAISE EXCEPTION 'enqueue: priority must be from -32768 to 32767, got %', quote_nullable(priority)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF max_attempts IS NULL OR max_attempts NOT BETWEEN 1 AND 1000000 THEN
        RAISE EXCEPTION 'enqueue: max_attempts must be from 1 to 1000000, got %', quote_nullable(max_attempts)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF run_at IS NULL OR NOT isfinite(run_at) OR run_at > now() + interval '100 years'
       OR run_at < '1970-01-01 00:00:00+00' THEN
        RAISE EXCEPTION 'enqueue: run_at must be a finite time from 1970-01-01 to 100 years ahead (a past one means due now), got %', quote_nullable(run_at)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF dedupe_key IS NOT NULL AND length(dedupe_key) NOT BETWEEN 1 AND 500 THEN
        RAISE EXCEPTION 'enqueue: dedupe_key must be 1 to 500 characters, got %', length(dedupe_key)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF group_key IS NOT NULL AND length(group_key) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'enqueue: group_key must be 1 to 200 characters, got %', length(group_key)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF depends_on IS NOT NULL AND (array_position(depends_on, NULL) IS NOT NULL
                                   OR cardinality(depends_on) > 10000) THEN
        RAISE EXCEPTION 'enqueue: depends_on must hold job ids (no NULL), at most 10000'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    first_state := {s}.dependency_state(depends_on);
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

-- queue_stats as in 0004, the oldest queued age guarded: a row with an infinite run_at
-- (put in by hand, or from before this revision) made every status query fail with
-- "cannot subtract infinite timestamps".
CREATE OR REPLACE VIEW {s}.queue_stats AS
WITH unfinished AS (
    SELECT queue,
           count(*) FILTER (WHERE state = 'queued' AND run_at <= now()) AS queued,
           count(*) FILTER (WHERE state = 'queued' AND run_at > now()) AS scheduled,
           count(*) FILTER (WHERE state = 'waiting') AS waiting,
           count(*) FILTER (WHERE state = 'running') AS running,
           round(extract(epoch FROM now() - min(run_at)
                 FILTER (WHERE state = 'queued' AND run_at <= now() AND isfinite(run_at)))
                 ::numeric, 3)
               AS oldest_queued_age_seconds
    FROM {s}.jobs
    WHERE state IN ('waiting', 'queued', 'running')
    GROUP BY queue
), failed AS (
    SELECT queue, count(*) AS failed FROM {s}.jobs WHERE state = 'failed' GROUP BY queue
), recent AS (
    SELECT queue, count(*) AS finished_last_minute FROM (
        SELECT queue FROM {s}.jobs
        WHERE state IN ('succeeded', 'failed', 'cancelled')
          AND finished_at > now() - interval '1 minute'
        UNION ALL
        SELECT queue FROM {s}.succeeded_jobs WHERE finished_at > now() - interval '1 minute'
    ) AS f
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
    s = f'"{schema}"'
    all_checks = " AND ".join(f"coalesce(({expr}), true)" for _, expr in CHECKS)
    run_at_ok = f"coalesce(({CHECKS[0][1]}), true)"
    parts = [FAIL_EXISTING.format(s=s, all_checks=all_checks, run_at_ok=run_at_ok)]
    parts += [ADD.format(s=s, name=name, expr=expr) for name, expr in CHECKS]
    parts += [VALIDATE.format(s=s, name=name) for name, _ in CHECKS]
    parts.append(DDL.format(s=s, max_payload=256 * 1024, max_depth=64, container=_CONTAINER))
    op.execute("".join(parts))


def downgrade() -> None:
    raise NotImplementedError("pgqueue migrations go forward only")
