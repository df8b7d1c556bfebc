"""Read-only, unmanaged models over pgqueue's views, for the Django admin and the ORM.

``Job`` reads ``<schema>.all_jobs`` (every job, succeeded ones included), ``QueueStat``
``<schema>.queue_stats``. Django never creates, alters or writes these (``managed =
False``); pgqueue's migrations own them. To change a job, use ``app.admin`` (retry,
cancel), the CLI or pgqueue's SQL functions, which keep its invariants.
"""

from __future__ import annotations

from typing import Any

from django.contrib.postgres.fields import ArrayField
from django.db import models

from .conf import table


class ReadOnly(models.Model):
    """Refuses save() and delete(): these rows belong to pgqueue."""

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError(
            f"{type(self).__name__} is read-only: change jobs with app.admin or `pgqueue jobs`"
        )

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise NotImplementedError(
            f"{type(self).__name__} is read-only: change jobs with app.admin or `pgqueue jobs`"
        )


#: A job's states (``scheduled`` is ``queued`` with a future ``run_at``).
STATES = [
    ("waiting", "waiting"),
    ("queued", "queued"),
    ("running", "running"),
    ("succeeded", "succeeded"),
    ("failed", "failed"),
    ("cancelled", "cancelled"),
]


class Job(ReadOnly):
    id = models.BigIntegerField(primary_key=True)
    queue = models.TextField()
    task = models.TextField()
    args = models.JSONField()
    kwargs = models.JSONField()
    state = models.TextField(choices=STATES)
    priority = models.SmallIntegerField()
    run_at = models.DateTimeField(null=True)
    attempt = models.IntegerField()
    max_attempts = models.IntegerField()
    error_count = models.IntegerField()
    lost_count = models.IntegerField()
    lease_expires_at = models.DateTimeField(null=True)
    worker_id = models.TextField(null=True)
    dedupe_key = models.TextField(null=True)
    errors = models.JSONField(null=True)
    result = models.JSONField(null=True)
    created_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True)
    finished_at = models.DateTimeField(null=True)
    cancel_requested_at = models.DateTimeField(null=True)
    group_key = models.TextField(null=True)
    depends_on = ArrayField(models.BigIntegerField(), null=True)

    class Meta:
        managed = False
        db_table = table("all_jobs")
        ordering = ("-id",)
        verbose_name = "job"

    def __str__(self) -> str:
        return f"job {self.id} {self.task} ({self.state})"


class QueueStat(ReadOnly):
    queue = models.TextField(primary_key=True)
    queued = models.BigIntegerField()
    scheduled = models.BigIntegerField()
    waiting = models.BigIntegerField()
    running = models.BigIntegerField()
    failed = models.BigIntegerField()
    oldest_queued_age_seconds = models.DecimalField(max_digits=20, decimal_places=3, null=True)
    finished_last_minute = models.BigIntegerField()
    paused = models.BooleanField()
    max_running = models.IntegerField(null=True)
    max_running_per_group = models.IntegerField(null=True)
    rate_limit = models.IntegerField(null=True)
    rate_period = models.FloatField(null=True)
    priority_aging = models.FloatField(null=True)

    class Meta:
        managed = False
        db_table = table("queue_stats")
        ordering = ("queue",)
        verbose_name = "queue"

    def __str__(self) -> str:
        return str(self.queue)
