"""Read-only admin pages: jobs and queues. Nothing can be added, changed or deleted here;
retry and cancel with ``app.admin``, ``pgqueue jobs retry|cancel`` or SQL."""

from __future__ import annotations

from typing import Any

from django.contrib import admin

from .models import Job, QueueStat


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    actions = None

    def has_add_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False


@admin.register(Job)
class JobAdmin(ReadOnlyAdmin):
    list_display = ("id", "task", "queue", "state", "attempt", "max_attempts", "run_at",
                    "finished_at")  # fmt: skip
    list_filter = ("state", "queue")
    search_fields = ("task", "=dedupe_key", "=group_key")
    # all_jobs is a UNION of two tables: skip the unfiltered count(*) over both.
    show_full_result_count = False
    date_hierarchy = None


@admin.register(QueueStat)
class QueueStatAdmin(ReadOnlyAdmin):
    list_display = ("queue", "queued", "scheduled", "waiting", "running", "failed",
                    "oldest_queued_age_seconds", "finished_last_minute", "paused")  # fmt: skip
    list_display_links = None
