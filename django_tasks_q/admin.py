"""The queue in Django's admin: waiting and running tasks, their history, the
workers, periodic schedules, and a dashboard.

Read-only: nobody hand-edits a task a worker may be running. Every change is
an action that asks for confirmation, needs the model's change (or delete)
permission, and goes through ``operations.py`` like the ``taskq`` command.

The lists show the queue of the default task backend (``backend_alias``);
subclass and register again to show another. The dashboard shows every
backend's queues and workers, Redis too.
"""

import json
import uuid
from datetime import timedelta

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, Max, Min, OuterRef, QuerySet
from django.tasks import DEFAULT_TASK_BACKEND_ALIAS, task_backends
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.text import capfirst
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from .backends.base import queue_backends
from .backends.database import figures, operations
from .models import Dashboard, ResultStatus, Schedule, Task, TaskResult, TaskStatus, Worker
from .pagination import EstimatedCountPaginator

CONFIRM_MAX_DISPLAY = 20  # rows listed on a confirmation page


def pretty_json(value):
    text = json.dumps(value, indent=2, ensure_ascii=False)
    return format_html('<pre class="taskq-pre">{}</pre>', text)


def humanize_seconds(seconds):
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def timestamp(field, description):
    """A column showing ``field`` to the second (the full value on hover)."""

    @admin.display(description=description, ordering=field)
    def show(self, obj):
        value = getattr(obj, field)
        if value is None:
            return "—"
        local = timezone.localtime(value)
        return format_html(
            '<time datetime="{}" title="{}">{}</time>',
            value.isoformat(),
            local.isoformat(),
            local.strftime("%Y-%m-%d %H:%M:%S"),
        )

    return show


def task_state(task, now=None):
    """What a queue row is doing, in an operator's words."""
    if task.status == TaskStatus.RUNNING:
        return _("Aborting") if task.abort_requested_at else _("Running")
    if task.status == TaskStatus.BLOCKED:
        return _("Waiting for other tasks")
    if task.run_after > (now or timezone.now()):
        return _("Retry scheduled") if task.attempts else _("Scheduled")
    return _("Waiting")


def confirmation(modeladmin, request, queryset, *, title, question, button):
    """The page that asks before an action runs; None once it has been answered.

    It posts the same action back to the same changelist URL (so with the same
    filters) with ``confirm=yes``: the selected ids, or ``select_across`` for
    every row the filters match, never a hidden input per matching row.
    """
    if request.POST.get("confirm") == "yes":
        return None
    objects, count = list(queryset[:CONFIRM_MAX_DISPLAY]), queryset.count()
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "question": question,
        "button": button,
        "opts": modeladmin.opts,
        "objects": objects,
        "count": count,
        "more": count - len(objects),
        "action": request.POST.get("action", ""),
        "select_across": request.POST.get("select_across") in ("1", "True", "true"),
        "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "media": modeladmin.media,
    }
    request.current_app = modeladmin.admin_site.name
    return TemplateResponse(request, "admin/django_tasks_q/confirm_action.html", context)


# -- list filters ----------------------------------------------------------------


class ValuesFilter(admin.SimpleListFilter):
    """The distinct values of a column, read through its index (not SELECT DISTINCT)."""

    column = ""

    def lookups(self, request, model_admin):
        values = set(figures.distinct_values(model_admin.model, self.column, model_admin.using))
        values |= set(self.extra_values(model_admin))
        return [(value, value) for value in sorted(values)]

    def extra_values(self, model_admin):
        return []

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(**{self.column: self.value()})
        return queryset


class QueueFilter(ValuesFilter):
    title = _("queue")
    parameter_name = column = "queue_name"

    def extra_values(self, model_admin):
        # The configured queues, even before any task has used them.
        return sorted(task_backends[model_admin.backend_alias].queues)


class TaskNameFilter(ValuesFilter):
    title = _("task")
    parameter_name = column = "task_path"


class StateFilter(admin.SimpleListFilter):
    title = _("state")
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [
            ("waiting", _("Waiting")),
            ("scheduled", _("Scheduled")),
            ("retrying", _("Retry scheduled")),
            ("running", _("Running")),
            ("blocked", _("Waiting for other tasks")),
        ]

    def queryset(self, request, queryset):
        if self.value() not in dict(self.lookup_choices):  # none, or not one of ours
            return queryset
        return queryset.in_state(self.value(), timezone.now())


# -- the shared part ---------------------------------------------------------------


class ProbedDatesQuerySet(QuerySet):
    """``datetimes()`` for the date hierarchy without reading every row.

    Django's asks ``SELECT DISTINCT DATE_TRUNC(...)`` over every matching row:
    0.6 s at a million results, on each page load. This asks, for each year,
    month or day between the first and the last row, whether any row falls in
    it: at most 31 index probes, whatever the size of the table.
    """

    def datetimes(self, field_name, kind, order="ASC", tzinfo=None):
        if kind not in ("year", "month", "day"):
            return super().datetimes(field_name, kind, order, tzinfo)
        tz = tzinfo or timezone.get_current_timezone()
        bounds = self.aggregate(first=Min(field_name), last=Max(field_name))
        if bounds["first"] is None:
            return []
        first, last = (timezone.localtime(bounds[k], tz) for k in ("first", "last"))
        start = first.replace(hour=0, minute=0, second=0, microsecond=0)
        if kind in ("year", "month"):
            start = start.replace(day=1)
        if kind == "year":
            start = start.replace(month=1)
        found = []
        while start <= last:
            if kind == "day":
                end = start + timedelta(days=1)
            elif kind == "month":
                end = start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
            else:
                end = start.replace(year=start.year + 1)
            if self.filter(**{f"{field_name}__gte": start, f"{field_name}__lt": end}).exists():
                found.append(start)
            start = end
        return found[::-1] if order == "DESC" else found


class LeanChangeList(ChangeList):
    def get_queryset(self, request, exclude_parameters=None):
        # A list page shows none of the JSON payloads: don't read them.
        queryset = super().get_queryset(request, exclude_parameters)
        queryset = queryset.defer(*self.model_admin.list_defer)
        if self.model_admin.probe_dates:
            queryset = ProbedDatesQuerySet(
                model=queryset.model, query=queryset.query, using=queryset.db
            )
        return queryset


class QueueModelAdmin(admin.ModelAdmin):
    backend_alias = DEFAULT_TASK_BACKEND_ALIAS
    paginator = EstimatedCountPaginator
    show_full_result_count = False  # no second COUNT(*) over the whole table
    show_facets = admin.ShowFacets.NEVER  # a COUNT per filter choice: too slow here
    list_per_page = 50
    list_defer = ("args", "kwargs", "errors")
    probe_dates = False  # see ProbedDatesQuerySet: for tables too big to scan
    search_fields = ("task_path",)  # shows the search box; see get_search_results
    search_help_text = _("A task id, or part of a task's dotted path.")

    class Media:
        css = {"all": ["django_tasks_q/admin.css"]}

    @property
    def using(self):
        return operations.queue_database(self.backend_alias)

    def get_queryset(self, request):
        return super().get_queryset(request).using(self.using)

    def get_changelist(self, request, **kwargs):
        return LeanChangeList

    def get_search_results(self, request, queryset, search_term):
        # An id finds its row through the primary key. Anything else matches
        # task paths (the only text worth searching).
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            return queryset.filter(pk=uuid.UUID(term)), False
        except ValueError:
            return queryset.filter(task_path__contains=term), False

    def has_add_permission(self, request):
        return False  # tasks are enqueued by code

    def has_change_permission(self, request, obj=None):
        # The change permission allows the actions; no row is ever edited.
        return obj is None and super().has_change_permission(request)

    def get_actions(self, request, action_location=None):
        # action_location: Django 6.1's; our actions are the list's (and the
        # detail page's buttons post to the list).
        location = {"action_location": action_location} if action_location else {}
        actions = super().get_actions(request, **location)
        actions.pop("delete_selected", None)  # ours is set-based and status-checked
        return actions

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "can_operate": super().has_change_permission(request),
            "can_delete_rows": super().has_delete_permission(request),
            "changelist_url": reverse(
                f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist",
                current_app=self.admin_site.name,
            ),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.display(description=_("task"), ordering="task_path")
    def task_name(self, obj):
        return obj.task_path

    @admin.display(description=_("queue"), ordering="queue_name")
    def queue(self, obj):
        return obj.queue_name

    enqueued = timestamp("enqueued_at", _("enqueued"))
    scheduled_for = timestamp("run_after", _("run after"))
    started = timestamp("started_at", _("started"))
    last_attempted = timestamp("last_attempted_at", _("last attempted"))

    @admin.display(description=_("arguments"))
    def args_json(self, obj):
        return pretty_json(obj.args)

    @admin.display(description=_("keyword arguments"))
    def kwargs_json(self, obj):
        return pretty_json(obj.kwargs)

    @admin.display(description=_("errors"))
    def errors_display(self, obj):
        if not obj.errors:
            return "—"
        return format_html_join(
            "",
            '<div class="taskq-error"><p><strong>{}</strong> {}</p>'
            '<pre class="taskq-pre">{}</pre></div>',
            (
                (_("Attempt %(n)d:") % {"n": n}, e.get("exception_class_path"), e.get("traceback"))
                for n, e in enumerate(obj.errors, 1)
            ),
        )

    @admin.display(description=_("attempt history"))
    def attempt_history(self, obj):
        if not obj.attempts:
            return _("Not attempted yet.")
        rows = []
        for n in range(1, obj.attempts + 1):
            worker = obj.worker_ids[n - 1] if n <= len(obj.worker_ids) else "—"
            if n <= len(obj.errors):
                outcome = obj.errors[n - 1].get("exception_class_path", "").rpartition(".")[2]
                outcome = _("failed: %(error)s") % {"error": outcome}
            else:
                outcome = self.final_outcome(obj)
            rows.append((n, worker, outcome))
        return format_html(
            '<table class="taskq-attempts"><thead><tr><th>{}</th><th>{}</th><th>{}</th></tr>'
            "</thead><tbody>{}</tbody></table>",
            _("Attempt"),
            _("Worker"),
            _("Outcome"),
            format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", rows),
        )

    def final_outcome(self, obj):
        raise NotImplementedError

    def run_operation(self, request, queryset, operation, done, skipped):
        """Run ``operation`` on ``queryset``; say what it did, and what it left."""
        selected = queryset.count()
        count = operation(queryset)
        self.message_user(request, done(count), messages.SUCCESS if count else messages.WARNING)
        if selected > count:
            self.message_user(request, skipped(selected - count), messages.WARNING)


# -- the queue ---------------------------------------------------------------------


@admin.register(Task)
class TaskAdmin(QueueModelAdmin):
    list_display = (
        "task_name",
        "queue",
        "state",
        "priority",
        "attempts",
        "enqueued",
        "scheduled_for",
        "started",
        "worker_id",
    )
    list_filter = (StateFilter, QueueFilter, TaskNameFilter)
    date_hierarchy = "enqueued_at"
    ordering = ("-id",)  # ids are UUIDv7: newest first, through the primary key
    actions = ("cancel_tasks", "abort_tasks", "delete_tasks")
    fieldsets = (
        (None, {"fields": ("id", "task_name", "queue_name", "state", "priority", "unique_key")}),
        (_("Call"), {"fields": ("args_json", "kwargs_json")}),
        (
            _("Attempts"),
            {"fields": ("attempts", "max_attempts", "worker_id", "attempt_history")},
        ),
        (_("Errors"), {"fields": ("errors_display",)}),
        (
            _("Timing"),
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
    change_form_template = "admin/django_tasks_q/task/change_form.html"

    lease_expires = timestamp("lease_expires_at", _("lease expires"))
    abort_requested = timestamp("abort_requested_at", _("abort requested"))
    deadline = timestamp("expires_at", _("expires (if not started by then)"))
    search_help_text = _("A task id, a unique key, or part of a task's dotted path.")

    def get_search_results(self, request, queryset, search_term):
        found, duplicates = super().get_search_results(request, queryset, search_term)
        if term := search_term.strip():
            found |= queryset.filter(unique_key=term)  # whole keys only: the unique index
        return found, duplicates

    @admin.display(description=_("state"), ordering="status")
    def state(self, obj):
        return task_state(obj)

    def final_outcome(self, obj):
        return _("running") if obj.status == TaskStatus.RUNNING else _("waiting to retry")

    def has_delete_permission(self, request, obj=None):
        allowed = super().has_delete_permission(request, obj)
        return allowed and (obj is None or obj.status == TaskStatus.READY)

    def delete_model(self, request, obj):
        # Through the status check: the task may have been claimed meanwhile.
        operations.delete_waiting(self.get_queryset(request).filter(pk=obj.pk))

    def delete_queryset(self, request, queryset):
        operations.delete_waiting(queryset)

    @admin.action(description=_("Cancel selected waiting tasks"), permissions=["change"])
    def cancel_tasks(self, request, queryset):
        if response := confirmation(
            self,
            request,
            queryset,
            title=_("Cancel tasks"),
            question=_(
                "Cancel these tasks? Waiting and scheduled tasks leave the queue and are "
                "recorded as cancelled; running tasks are left to finish."
            ),
            button=_("Yes, cancel them"),
        ):
            return response
        self.run_operation(
            request,
            queryset,
            operations.cancel,
            lambda n: ngettext("Cancelled %d task.", "Cancelled %d tasks.", n) % n,
            lambda n: (
                ngettext(
                    "%d task was running or gone, and was left alone.",
                    "%d tasks were running or gone, and were left alone.",
                    n,
                )
                % n
            ),
        )

    @admin.action(description=_("Abort selected tasks"), permissions=["change"])
    def abort_tasks(self, request, queryset):
        if response := confirmation(
            self,
            request,
            queryset,
            title=_("Abort tasks"),
            question=_(
                "Abort these tasks? Running tasks are asked to stop: async tasks are "
                "cancelled and process-pool tasks killed at once; thread-pool tasks stop "
                "when they next check for it. Waiting and scheduled tasks are cancelled. "
                "All are recorded as cancelled."
            ),
            button=_("Yes, abort them"),
        ):
            return response
        selected = queryset.count()
        cancelled, stopping = operations.abort(queryset)
        if stopping:
            self.message_user(
                request,
                ngettext(
                    "Asked %d running task to stop.", "Asked %d running tasks to stop.", stopping
                )
                % stopping,
                messages.SUCCESS,
            )
        if cancelled:
            self.message_user(
                request,
                ngettext("Cancelled %d waiting task.", "Cancelled %d waiting tasks.", cancelled)
                % cancelled,
                messages.SUCCESS,
            )
        if gone := selected - cancelled - stopping:
            self.message_user(
                request,
                ngettext(
                    "%d task had finished, and was left alone.",
                    "%d tasks had finished, and were left alone.",
                    gone,
                )
                % gone,
                messages.WARNING,
            )

    @admin.action(description=_("Delete selected waiting tasks"), permissions=["delete"])
    def delete_tasks(self, request, queryset):
        if response := confirmation(
            self,
            request,
            queryset,
            title=_("Delete tasks"),
            question=_(
                "Delete these tasks? Waiting and scheduled tasks are deleted without a "
                "trace in the history; running tasks are left to finish."
            ),
            button=_("Yes, delete them"),
        ):
            return response
        self.run_operation(
            request,
            queryset,
            operations.delete_waiting,
            lambda n: ngettext("Deleted %d task.", "Deleted %d tasks.", n) % n,
            lambda n: (
                ngettext(
                    "%d task was running or gone, and was left alone.",
                    "%d tasks were running or gone, and were left alone.",
                    n,
                )
                % n
            ),
        )


# -- the history -------------------------------------------------------------------


@admin.register(TaskResult)
class TaskResultAdmin(QueueModelAdmin):
    list_display = (
        "task_name",
        "queue",
        "status",
        "priority",
        "attempts",
        "enqueued",
        "started",
        "finished",
        "duration",
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
    actions = ("retry_results", "rerun_results", "delete_results")
    fieldsets = (
        (None, {"fields": ("id", "task_name", "queue_name", "status", "priority")}),
        (_("Call"), {"fields": ("args_json", "kwargs_json")}),
        (_("Outcome"), {"fields": ("return_value_json", "errors_display")}),
        (_("Attempts"), {"fields": ("attempts", "attempt_history")}),
        (
            _("Timing"),
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
    change_form_template = "admin/django_tasks_q/taskresult/change_form.html"

    finished = timestamp("finished_at", _("finished"))

    @admin.display(description=_("duration"))
    def duration(self, obj):
        # The last attempt's: from the first start would count retry waits too.
        if obj.last_attempted_at is None:
            return "—"
        return humanize_seconds((obj.finished_at - obj.last_attempted_at).total_seconds())

    @admin.display(description=_("worker"))
    def worker(self, obj):
        return obj.worker_ids[-1] if obj.worker_ids else "—"

    @admin.display(description=_("return value"))
    def return_value_json(self, obj):
        return pretty_json(obj.return_value)

    def final_outcome(self, obj):
        return obj.get_status_display().lower()

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "retryable": ResultStatus.UNSUCCESSFUL}
        return super().change_view(request, object_id, form_url, extra_context)

    def delete_queryset(self, request, queryset):
        operations.delete_results(queryset)

    @admin.action(description=_("Retry selected failed tasks"), permissions=["change"])
    def retry_results(self, request, queryset):
        if response := confirmation(
            self,
            request,
            queryset,
            title=_("Retry tasks"),
            question=_(
                "Retry these tasks? Each failed, cancelled or expired task goes back into "
                "the queue, ready now, with one more attempt; its id and history are kept. "
                "Successful ones are left alone (re-run those)."
            ),
            button=_("Yes, retry them"),
        ):
            return response
        self.run_operation(
            request,
            queryset,
            operations.retry,
            lambda n: (
                ngettext(
                    "Retried %d task: it is waiting in the queue.",
                    "Retried %d tasks: they are waiting in the queue.",
                    n,
                )
                % n
            ),
            lambda n: (
                ngettext(
                    "%d task had succeeded (or was gone), and was left alone.",
                    "%d tasks had succeeded (or were gone), and were left alone.",
                    n,
                )
                % n
            ),
        )

    @admin.action(description=_("Re-run selected tasks as new tasks"), permissions=["change"])
    def rerun_results(self, request, queryset):
        if response := confirmation(
            self,
            request,
            queryset,
            title=_("Re-run tasks"),
            question=_(
                "Enqueue a fresh copy of each of these tasks, with the same arguments and "
                "a new id? The results here are kept."
            ),
            button=_("Yes, re-run them"),
        ):
            return response
        self.run_operation(
            request,
            queryset,
            lambda results: len(operations.rerun(results)),
            lambda n: ngettext("Enqueued %d new task.", "Enqueued %d new tasks.", n) % n,
            lambda n: ngettext("%d result was gone.", "%d results were gone.", n) % n,
        )

    @admin.action(description=_("Delete selected results"), permissions=["delete"])
    def delete_results(self, request, queryset):
        if response := confirmation(
            self,
            request,
            queryset,
            title=_("Delete results"),
            question=_("Delete these results from the history?"),
            button=_("Yes, delete them"),
        ):
            return response
        self.run_operation(
            request,
            queryset,
            operations.delete_results,
            lambda n: ngettext("Deleted %d result.", "Deleted %d results.", n) % n,
            lambda n: ngettext("%d result was gone.", "%d results were gone.", n) % n,
        )


# -- the workers -------------------------------------------------------------------


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    backend_alias = DEFAULT_TASK_BACKEND_ALIAS
    list_display = (
        "id",
        "hostname",
        "pid",
        "backend",
        "queue_list",
        "concurrency",
        "pool",
        "started",
        "last_heartbeat",
        "live",
    )
    list_filter = ("hostname", "backend")
    search_fields = ("id", "hostname")
    ordering = ("hostname", "started_at")

    @property
    def using(self):
        return operations.queue_database(self.backend_alias)

    def get_queryset(self, request):
        return super().get_queryset(request).using(self.using)

    def has_add_permission(self, request):
        return False  # workers register themselves

    def has_change_permission(self, request, obj=None):
        return False  # the worker keeps its own row; a stale one may be deleted

    started = timestamp("started_at", _("started"))
    last_heartbeat = timestamp("last_heartbeat_at", _("last heartbeat"))

    @admin.display(description=_("queues"))
    def queue_list(self, obj):
        return ", ".join(obj.queues) or _("(all)")

    @admin.display(description=_("live"), boolean=True)
    def live(self, obj):
        timeout = task_backends[self.backend_alias].lease
        return obj.last_heartbeat_at >= timezone.now() - timeout


# -- periodic schedules ------------------------------------------------------------


@admin.register(Schedule)
class ScheduleAdmin(admin.ModelAdmin):
    """Schedules are declared in code (``@periodic``) and kept by the workers:
    read-only here, except that they can be paused and resumed."""

    backend_alias = DEFAULT_TASK_BACKEND_ALIAS
    list_display = (
        "name",
        "task_path",
        "description",
        "paused",
        "next_tick",
        "last_tick",
        "last_task",
    )
    list_filter = ("paused",)
    search_fields = ("name", "task_path")
    ordering = ("name",)
    actions = ("pause_schedules", "resume_schedules")
    fields = list_display
    readonly_fields = ("next_tick", "last_tick", "last_task")

    class Media:
        css = {"all": ["django_tasks_q/admin.css"]}

    @property
    def using(self):
        return operations.queue_database(self.backend_alias)

    def get_queryset(self, request):
        # Whether the last task has finished says which page to link to.
        finished = TaskResult.objects.using(self.using).filter(pk=OuterRef("last_task_id"))
        return super().get_queryset(request).using(self.using).annotate(finished=Exists(finished))

    def has_add_permission(self, request):
        return False  # declared in code

    def has_delete_permission(self, request, obj=None):
        return False  # the workers keep the rows of the declared schedules

    def has_change_permission(self, request, obj=None):
        # The change permission allows pausing and resuming; no field is edited.
        return obj is None and super().has_change_permission(request)

    last_tick = timestamp("last_tick_at", _("last tick"))
    next_tick_time = timestamp("next_tick_at", _("next tick"))

    @admin.display(description=_("next tick"), ordering="next_tick_at")
    def next_tick(self, obj):
        return _("paused") if obj.paused else self.next_tick_time(obj)

    @admin.display(description=_("last task"))
    def last_task(self, obj):
        if obj.last_task_id is None:
            return "—"
        model = TaskResult if obj.finished else Task
        if not self.admin_site.is_registered(model):
            return str(obj.last_task_id)
        url = reverse(
            f"admin:{model._meta.app_label}_{model._meta.model_name}_change",
            args=[obj.last_task_id],
            current_app=self.admin_site.name,
        )
        return format_html('<a href="{}">{}</a>', url, obj.last_task_id)

    # No confirmation page: both are undone by the other.
    @admin.action(description=_("Pause selected schedules"), permissions=["change"])
    def pause_schedules(self, request, queryset):
        count = operations.pause_schedules(queryset)
        message = ngettext(
            "Paused %d schedule: it enqueues nothing until resumed.",
            "Paused %d schedules: they enqueue nothing until resumed.",
            count,
        )
        self.message_user(request, message % count, messages.SUCCESS if count else messages.WARNING)

    @admin.action(description=_("Resume selected schedules"), permissions=["change"])
    def resume_schedules(self, request, queryset):
        count = operations.resume_schedules(queryset)
        message = ngettext(
            "Resumed %d schedule: it goes on from its next tick.",
            "Resumed %d schedules: they go on from their next tick.",
            count,
        )
        self.message_user(request, message % count, messages.SUCCESS if count else messages.WARNING)


# -- the dashboard -----------------------------------------------------------------


def throughput_chart(throughput, width=240, height=40):
    """Bars for an inline SVG: successful (bottom) and failed (top) per minute."""
    peak = max((ok + failed for _, ok, failed in throughput), default=0)
    scale = peak or 1
    step = width / max(len(throughput), 1)
    bars = []
    for i, (minute, ok, failed) in enumerate(throughput):
        ok_height = height * ok / scale
        failed_height = height * failed / scale
        bars.append(
            {
                "x": round(i * step, 2),
                "width": round(max(step - 1, 1), 2),
                "ok_y": round(height - ok_height, 2),
                "ok_height": round(ok_height, 2),
                "failed_y": round(height - ok_height - failed_height, 2),
                "failed_height": round(failed_height, 2),
                "label": f"{timezone.localtime(minute):%H:%M}: {ok} ok, {failed} failed",
            }
        )
    return {"bars": bars, "width": width, "height": height, "peak": peak}


@admin.register(Dashboard)
class DashboardAdmin(admin.ModelAdmin):
    """The admin index's link to the dashboard: its "changelist" is the dashboard."""

    backend_alias = DEFAULT_TASK_BACKEND_ALIAS

    def has_view_permission(self, request, obj=None):
        # Staff (admin_view checks is_staff) with any permission on the queue.
        return request.user.has_module_perms(self.opts.app_label)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_model_perms(self, request):
        return {"view": self.has_view_permission(request)}

    def get_urls(self):
        name = f"{self.opts.app_label}_{self.opts.model_name}_changelist"
        return [path("", self.admin_site.admin_view(self.changelist_view), name=name)]

    def changelist_view(self, request, extra_context=None):
        if not self.has_view_permission(request):
            raise PermissionDenied
        now = timezone.now()
        context = {
            **self.admin_site.each_context(request),
            "title": capfirst(_("task queue dashboard")),
            "opts": self.opts,
            "now": now,
            "backends": [
                self.backend_section(alias, backend, now)
                for alias, backend in queue_backends().items()
            ],
            "media": self.media,
            **(extra_context or {}),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/django_tasks_q/dashboard.html", context)

    def backend_section(self, alias, backend, now):
        """One backend's part of the dashboard: its queues and its workers."""
        section = {
            "alias": alias,
            "kind": type(backend).__name__,
            # The lists show the Task and TaskResult tables of backend_alias's
            # database: link the numbers only where they are that queue's.
            "linked": backend.queue_tables is not None
            and backend.queue_tables == operations.queue_database(self.backend_alias),
        }
        try:
            queues = backend.queue_stats(backend.queues, now=now)
            workers = backend.workers(now)
        except backend.transient_errors as error:
            # One store down must not take the others' figures with it.
            return {**section, "error": f"{type(error).__name__}: {error}"}
        for queue in queues:
            queue.chart = throughput_chart(queue.throughput)
            queue.oldest_waiting = humanize_seconds(queue.oldest_waiting_seconds)
        return {
            **section,
            "queues": queues,
            "live_workers": [w for w in workers if w.live],
            "stale_workers": len([w for w in workers if not w.live]),
        }

    class Media:
        css = {"all": ["django_tasks_q/admin.css"]}
