"""Rolling deploys: the task names each worker knows, and the tasks nobody knows.

``workers.tasks``: the task names the worker's app registers, written when the worker
registers (the app's tasks do not change while it runs). A task is known on a queue while
a row of workers (a live worker: the reaper deletes the rows of dead ones) has the queue
and the task.

``unknown_tasks``: one row per (queue, task) whose jobs a worker handed back because its
app does not know the task (an old worker during a rolling deploy), ``since`` the first
such hand-back. The UnknownTasks sweep deletes the row once a live worker of the queue
knows the task, and fails the queued jobs (kind ``unknown_task``) when none has for
``--unknown-task-timeout``. Written only on a hand-back, so it stays empty and costs
nothing outside deploys.

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import context, op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

DDL = """
ALTER TABLE {s}.workers ADD COLUMN tasks text[] NOT NULL DEFAULT '{{}}';
COMMENT ON COLUMN {s}.workers.tasks IS 'Task names the worker''s app registers: jobs of other tasks are handed back to a worker that knows them (rolling deploys).';

CREATE TABLE {s}.unknown_tasks (
    queue text        NOT NULL,
    task  text        NOT NULL,
    since timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (queue, task)
);
COMMENT ON TABLE {s}.unknown_tasks IS 'Tasks whose jobs were handed back by a worker that does not know them, since the first hand-back; deleted once a live worker of the queue knows the task, or when its jobs were failed (unknown_task) after --unknown-task-timeout.';
"""


def upgrade() -> None:
    schema = context.config.attributes["schema"]
    op.execute(DDL.format(s=f'"{schema}"'))


def downgrade() -> None:
    raise NotImplementedError("pgqueue migrations go forward only")
