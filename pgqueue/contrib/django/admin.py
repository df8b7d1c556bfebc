"""Read-only admin pages: jobs and queues. Nothing can be added, changed or deleted here;
retry and cancel with ``app.admin``, ``pgqueue jobs retry|cancel`` or SQL."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from django.contrib import admin
from django.core.paginator import Paginator

from .models import Job, QueueStat

#: The changelist counts at most this many jobs (then says "10000" and offers 100 pages):
#: an exact count(*) over every job, succeeded ones included, grows with the table.
COUNT_CAP = 10_000


class CappedPaginator(Paginator):  # type: ignore[misc]
    """A paginator whose count reads at most ``COUNT_CAP + 1`` rows."""

    @cached_property
    def count(self) -> int:
        return min(int(self.object_list[: COUNT_CAP + 1].count()), COUNT_CAP)


class QueueFilter(admin.SimpleListFilter):  # type: ignore[misc]
    """Queues as ``queue_stats`` names them (no DISTINCT over every job)."""

    title = "queue"
    parameter_name = "queue"

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, str]]:
        return [(q, q) for q in QueueStat.objects.values_list("queue", flat=True)]

    def queryset(self, request: Any, queryset: Any) -> Any:
        return queryset.filter(queue=self.value()) if self.value() else queryset


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
    list_filter = ("state", QueueFilter)
    search_fields = ("task", "=dedupe_key", "=group_key")
    # all_jobs is a UNION of two tables that grow: no exact count(*) over both.
    show_full_result_count = False
    paginator = CappedPaginator


@admin.register(QueueStat)
class QueueStatAdmin(ReadOnlyAdmin):
    list_display = ("queue", "queued", "scheduled", "waiting", "running", "failed",
                    "oldest_queued_age_seconds", "finished_last_minute", "paused")  # fmt: skip
    list_display_links = None
