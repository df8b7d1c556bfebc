"""Django's record of the unmanaged models (it creates nothing: pgqueue's own migrations,
run by ``manage.py migrate`` or ``pgqueue_migrate``, own the views). The table names follow
settings.PGQUEUE['SCHEMA'], so a project with another schema gets no new migration."""

from __future__ import annotations

import django.contrib.postgres.fields
from django.db import migrations, models

from pgqueue.contrib.django.conf import table


class Migration(migrations.Migration):
    initial = True
    dependencies: list[tuple[str, str]] = []

    operations = [
        migrations.CreateModel(
            name="Job",
            fields=[
                ("id", models.BigIntegerField(primary_key=True, serialize=False)),
                ("queue", models.TextField()),
                ("task", models.TextField()),
                ("args", models.JSONField()),
                ("kwargs", models.JSONField()),
                (
                    "state",
                    models.TextField(
                        choices=[
                            ("waiting", "waiting"),
                            ("queued", "queued"),
                            ("running", "running"),
                            ("succeeded", "succeeded"),
                            ("failed", "failed"),
                            ("cancelled", "cancelled"),
                        ]
                    ),
                ),
                ("priority", models.SmallIntegerField()),
                ("run_at", models.DateTimeField(null=True)),
                ("attempt", models.IntegerField()),
                ("max_attempts", models.IntegerField()),
                ("error_count", models.IntegerField()),
                ("lost_count", models.IntegerField()),
                ("lease_expires_at", models.DateTimeField(null=True)),
                ("worker_id", models.TextField(null=True)),
                ("dedupe_key", models.TextField(null=True)),
                ("errors", models.JSONField(null=True)),
                ("result", models.JSONField(null=True)),
                ("created_at", models.DateTimeField()),
                ("started_at", models.DateTimeField(null=True)),
                ("finished_at", models.DateTimeField(null=True)),
                ("cancel_requested_at", models.DateTimeField(null=True)),
                ("group_key", models.TextField(null=True)),
                (
                    "depends_on",
                    django.contrib.postgres.fields.ArrayField(
                        base_field=models.BigIntegerField(), null=True, size=None
                    ),
                ),
            ],
            options={
                "verbose_name": "job",
                "db_table": table("all_jobs"),
                "ordering": ("-id",),
                "managed": False,
            },
        ),
        migrations.CreateModel(
            name="QueueStat",
            fields=[
                ("queue", models.TextField(primary_key=True, serialize=False)),
                ("queued", models.BigIntegerField()),
                ("scheduled", models.BigIntegerField()),
                ("waiting", models.BigIntegerField()),
                ("running", models.BigIntegerField()),
                ("failed", models.BigIntegerField()),
                (
                    "oldest_queued_age_seconds",
                    models.DecimalField(decimal_places=3, max_digits=20, null=True),
                ),
                ("finished_last_minute", models.BigIntegerField()),
                ("paused", models.BooleanField()),
                ("max_running", models.IntegerField(null=True)),
                ("max_running_per_group", models.IntegerField(null=True)),
                ("rate_limit", models.IntegerField(null=True)),
                ("rate_period", models.FloatField(null=True)),
                ("priority_aging", models.FloatField(null=True)),
            ],
            options={
                "verbose_name": "queue",
                "db_table": table("queue_stats"),
                "ordering": ("queue",),
                "managed": False,
            },
        ),
    ]
