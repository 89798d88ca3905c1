"""The queue (Task rows) and its history (TaskResult rows)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db import connections
from django.db.models import Func, QuerySet, TextField, Value
from django.db.models.fields.json import KT
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from ..backends.database import operations
from ..backends.database.held_back import held_back
from ..models import ResultStatus, Task, TaskDependency, TaskGroup, TaskResult, TaskStatus
from .base import QueueModelAdmin, group_links
from .display import (
    NOTHING,
    ago,
    clipped,
    error_line,
    humanize_seconds,
    pretty_json,
    task_state,
    timestamp,
)
from .filters import QueueFilter, StateFilter, TaskNameFilter
from .operator_actions import admin_actions


class TaskAdmin(QueueModelAdmin):
    # What fits a 1366 px screen (admin.css): the detail page has the rest.
    list_display = (
        "task_name",
        "queue",
        "state",
        "priority",
        "enqueued",
        "worker",
    )
    list_filter = (StateFilter, QueueFilter, TaskNameFilter)
    date_hierarchy = "enqueued_at"
    ordering = ("-id",)  # ids are UUIDv7: newest first, through the primary key
    actions = admin_actions(Task)
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "id",
                    "task_name",
                    "queue_name",
                    "state",
                    "priority",
                    "unique_key",
                    "group",
                )
            },
        ),
        (gettext_lazy("Call"), {"fields": ("args_json", "kwargs_json")}),
        (
            gettext_lazy("Attempts"),
            {"fields": ("attempts", "max_attempts", "worker_id", "attempt_history")},
        ),
        (gettext_lazy("Errors"), {"fields": ("errors_display",)}),
        (
            gettext_lazy("Timing"),
            {
                "fields": (
                    "enqueued",
                    "scheduled_for",
                    "deadline",
                    "started",
                    "last_attempted",
                    "lease_expires",
                    "abort_requested",
                )
            },
        ),
    )

    lease_expires = timestamp("lease_expires_at", gettext_lazy("lease expires"))
    abort_requested = timestamp("abort_requested_at", gettext_lazy("abort requested"))
    deadline = timestamp("expires_at", gettext_lazy("expires (if not started by then)"))
    search_help_text = gettext_lazy("A task id, a unique key, or part of a task's dotted path.")

    def get_fieldsets(self, request: HttpRequest, obj: Task | None = None) -> Any:
        if obj is None or obj.status != TaskStatus.BLOCKED:
            return self.fieldsets
        [main, *rest] = self.fieldsets
        return (main, (gettext_lazy("Waits for"), {"fields": ("waits_for", "run_on")}), *rest)

    @admin.display(description=gettext_lazy("tasks"))
    def waits_for(self, obj: Task) -> str:
        """The tasks a blocked task waits for, linked, each with its state."""
        parents = list(
            TaskDependency.objects.using(self.using)
            .filter(child=obj.pk)
            .order_by("position")
            .values_list("parent", flat=True)
        )
        waiting = Task.objects.using(self.using).in_bulk(parents)
        finished = TaskResult.objects.using(self.using).in_bulk(parents)
        groups = TaskGroup.objects.using(self.using).in_bulk(parents)
        rows = []
        row: Task | TaskResult
        for parent in parents:
            if parent in groups:
                label = format_html("{} <code>{}</code>", str(groups[parent]), parent)
                rows.append((label, group_links(self, parent)))
                continue
            if parent in waiting:
                row, state = waiting[parent], task_state(waiting[parent])
            elif parent in finished:
                row, state = finished[parent], str(finished[parent].get_status_display())
            else:
                rows.append((format_html("<code>{}</code>", parent), _("gone")))
                continue
            url = reverse(
                f"admin:{row._meta.app_label}_{row._meta.model_name}_change",
                args=[parent],
                current_app=self.admin_site.name,
            )
            link = format_html('<a href="{}">{}</a> <code>{}</code>', url, row.task_path, parent)
            rows.append((link, state))
        if not rows:
            return NOTHING
        return format_html(
            '<ul class="taskq-waits-for">{}</ul>',
            format_html_join("", "<li>{} — {}</li>", rows),
        )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        found, duplicates = super().get_search_results(request, queryset, search_term)
        if term := search_term.strip():
            found |= queryset.filter(unique_key=term)  # whole keys only: the unique index
        return found, duplicates

    @admin.display(description=gettext_lazy("state"), ordering="status")
    def state(self, obj: Task) -> str:
        # A scheduled task says when it runs: the list has no column for it.
        now = timezone.now()
        if obj.status == TaskStatus.READY and obj.run_after > now:
            return f"{task_state(obj, now)} {ago(obj.run_after, now)}"
        queue_limits = getattr(self.backend, "queue_limits", {})
        if reason := held_back(obj, queue_limits, now, self.using):
            return f"{task_state(obj, now)} ({reason})"
        return task_state(obj, now)

    @admin.display(description=gettext_lazy("worker"), ordering="worker_id")
    def worker(self, obj: Task) -> str:
        return clipped(obj.worker_id) if obj.worker_id else NOTHING

    def final_outcome(self, obj: Any) -> str:
        return _("running") if obj.status == TaskStatus.RUNNING else _("waiting to retry")

    def has_delete_permission(self, request: HttpRequest, obj: Task | None = None) -> bool:
        allowed = super().has_delete_permission(request, obj)
        return allowed and (obj is None or obj.status == TaskStatus.READY)

    def delete_model(self, request: HttpRequest, obj: Task) -> None:
        # Through the status check: the task may have been claimed meanwhile.
        operations.delete_waiting(self.get_queryset(request).filter(pk=obj.pk))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        operations.delete_waiting(queryset)


def last_error(queryset: QuerySet[Any], key: str) -> Func:
    """``key`` of the last of a result's ``errors``, as text. SQLite names the
    last element of a JSON array ``#-1``, which Django's JSON paths write only
    from 6.0 on (Django 5.2 writes ``-1``: "JSON path error")."""
    if connections[queryset.db].vendor == "sqlite":
        path = Value(f"$[#-1].{key}")
        return Func("errors", path, function="JSON_EXTRACT", output_field=TextField())
    return KT(f"errors__-1__{key}")


class TaskResultAdmin(QueueModelAdmin):
    # What fits a 1366 px screen (admin.css): the detail page has the rest,
    # the queue is the filter's.
    list_display = (
        "task_name",
        "status",
        "finished",
        "duration",
        "error",
        "worker",
    )
    # Only the indexed order: sorting a million rows by another column is a
    # full sort on every page.
    sortable_by = ("finished",)
    list_filter = ("status", QueueFilter, TaskNameFilter)
    list_defer = ("args", "kwargs", "errors", "return_value")
    probe_dates = True
    date_hierarchy = "finished_at"
    ordering = ("-finished_at",)
    actions = admin_actions(TaskResult)
    fieldsets = (
        (None, {"fields": ("id", "task_name", "queue_name", "status", "priority", "group")}),
        (gettext_lazy("Call"), {"fields": ("args_json", "kwargs_json")}),
        (gettext_lazy("Outcome"), {"fields": ("return_value_json", "errors_display")}),
        (gettext_lazy("Attempts"), {"fields": ("attempts", "attempt_history")}),
        (
            gettext_lazy("Timing"),
            {
                "fields": (
                    "enqueued",
                    "scheduled_for",
                    "started",
                    "last_attempted",
                    "finished",
                    "duration",
                )
            },
        ),
    )

    finished = timestamp("finished_at", gettext_lazy("finished"))

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        # The error column's: the last error's text, not the whole list of
        # errors with every attempt's traceback.
        queryset = super().get_queryset(request)
        return queryset.annotate(
            last_error_class=last_error(queryset, "exception_class_path"),
            last_error_traceback=last_error(queryset, "traceback"),
        )

    @admin.display(description=gettext_lazy("error"))
    def error(self, obj: Any) -> str:
        # A success may follow failed attempts: nothing wrong to show then.
        if obj.status not in ResultStatus.UNSUCCESSFUL or not obj.last_error_class:
            return ""
        line, whole = error_line(obj.last_error_class, obj.last_error_traceback or "")
        return clipped(Truncator(line).chars(80), title=whole)

    @admin.display(description=gettext_lazy("duration"))
    def duration(self, obj: TaskResult) -> str:
        # The last attempt's: from the first start would count retry waits too.
        if obj.last_attempted_at is None:
            return NOTHING
        return humanize_seconds((obj.finished_at - obj.last_attempted_at).total_seconds())

    @admin.display(description=gettext_lazy("worker"))
    def worker(self, obj: TaskResult) -> str:
        return clipped(obj.worker_ids[-1]) if obj.worker_ids else NOTHING

    @admin.display(description=gettext_lazy("return value"))
    def return_value_json(self, obj: TaskResult) -> str:
        return pretty_json(obj.return_value)

    def final_outcome(self, obj: Any) -> str:
        return str(obj.get_status_display()).lower()

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        operations.delete_results(queryset)
