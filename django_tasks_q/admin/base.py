"""What the queue's admins share: the backend whose tables they show, and for
the queue and its history, lean list pages and read-only detail pages whose
only changes are the operator's actions."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import admin
from django.contrib.admin import helpers
from django.core.exceptions import ImproperlyConfigured
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.text import capfirst
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from ..actions import actions_on
from ..backends.base import QueueBackend
from ..backends.database import operations
from ..compat import DEFAULT_TASK_BACKEND_ALIAS, task_backends
from .changelist import LeanChangeList
from .display import NOTHING, clipped, pretty_json, timestamp
from .pagination import EstimatedCountPaginator


def group_links(model_admin: admin.ModelAdmin, group_id: uuid.UUID) -> str:
    """Links to the members of group ``group_id``, queued and finished."""
    links = [
        (
            reverse(
                f"admin:{model_admin.opts.app_label}_{model_name}_changelist",
                current_app=model_admin.admin_site.name,
            )
            + f"?group_id={group_id}",
            label,
        )
        for model_name, label in (("task", _("queued")), ("taskresult", _("finished")))
    ]
    return format_html_join(", ", '<a href="{}">{}</a>', links)


class BackendAdmin(admin.ModelAdmin):
    """Shows the rows of ``backend_alias``'s tables (the default task backend's;
    subclass and register again to show another)."""

    backend_alias = DEFAULT_TASK_BACKEND_ALIAS

    class Media:
        css = {"all": ["django_tasks_q/admin.css"]}

    @property
    def backend(self) -> QueueBackend:
        backend = task_backends[self.backend_alias]
        if not isinstance(backend, QueueBackend):
            raise ImproperlyConfigured(
                f"{type(self).__name__}.backend_alias: TASKS[{self.backend_alias!r}] is "
                f"{type(backend).__name__}, not a django-tasks-q backend."
            )
        return backend

    @property
    def using(self) -> str:
        return operations.queue_database(self.backend_alias)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return super().get_queryset(request).using(self.using)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # tasks are enqueued by code, workers and schedules keep their own rows

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # Titled by what it lists: nothing here is selected to be changed.
        title = capfirst(self.opts.verbose_name_plural)
        return super().changelist_view(request, {"title": title, **(extra_context or {})})


class QueueModelAdmin(BackendAdmin):
    """The queue's tasks and their history: read-only, but for the actions
    declared in ``actions.py`` for the model."""

    paginator = EstimatedCountPaginator
    show_full_result_count = False  # no second COUNT(*) over the whole table
    show_facets = admin.ShowFacets.NEVER  # a COUNT per filter choice: too slow here
    list_per_page = 50
    list_defer: tuple[str, ...] = ("args", "kwargs", "errors")
    probe_dates = False  # see ProbedDatesQuerySet: for tables too big to scan
    search_fields = ("task_path",)  # shows the search box; see get_search_results
    search_help_text = gettext_lazy("A task id, or part of a task's dotted path.")
    # Not admin/django_tasks_q/change_form.html: Django would use that one for
    # every model of the app.
    change_form_template = "admin/django_tasks_q/change_form_with_actions.html"

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[LeanChangeList]:
        return LeanChangeList

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        # An id finds its row through the primary key. Anything else matches
        # task paths (the only text worth searching).
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            return queryset.filter(pk=uuid.UUID(term)), False
        except ValueError:
            return queryset.filter(task_path__contains=term), False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        # The change permission allows the actions; no row is ever edited.
        return obj is None and super().has_change_permission(request)

    def get_actions(self, request: HttpRequest, action_location: Any = None) -> dict[str, Any]:
        # action_location: Django 6.1's; our actions are the list's (and the
        # detail page's buttons post to the list).
        location = {"action_location": action_location} if action_location else {}
        actions = super().get_actions(request, **location)
        actions.pop("delete_selected", None)  # ours is set-based and status-checked
        return actions

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Model | None = None,
    ) -> HttpResponse:
        # The row's actions, as buttons that post to the list (which asks first):
        # those the user may run that apply to this row.
        allowed = self.get_actions(request)
        context["object_actions"] = [
            (declared.name, declared.button)
            for declared in actions_on(self.model)
            if declared.button
            and declared.name in allowed
            and obj is not None
            and declared.offered(obj)
        ]
        context["changelist_url"] = reverse(
            f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist",
            current_app=self.admin_site.name,
        )
        context["action_checkbox_name"] = helpers.ACTION_CHECKBOX_NAME
        return super().render_change_form(request, context, add, change, form_url, obj)

    @admin.display(description=gettext_lazy("task"), ordering="task_path")
    def task_name(self, obj: Any) -> str:
        return clipped(str(obj.task_path))

    @admin.display(description=gettext_lazy("queue"), ordering="queue_name")
    def queue(self, obj: Any) -> str:
        return str(obj.queue_name)

    enqueued = timestamp("enqueued_at", gettext_lazy("enqueued"))
    scheduled_for = timestamp("run_after", gettext_lazy("run after"))
    started = timestamp("started_at", gettext_lazy("started"))
    last_attempted = timestamp("last_attempted_at", gettext_lazy("last attempted"))

    @admin.display(description=gettext_lazy("group"))
    def group(self, obj: Any) -> str:
        """The group (enqueue_group) of a member: its id, and links to its
        members in the queue and in the history."""
        if obj.group_id is None:
            return NOTHING
        return format_html("<code>{}</code> ({})", obj.group_id, group_links(self, obj.group_id))

    @admin.display(description=gettext_lazy("arguments"))
    def args_json(self, obj: Any) -> str:
        return pretty_json(obj.args)

    @admin.display(description=gettext_lazy("keyword arguments"))
    def kwargs_json(self, obj: Any) -> str:
        return pretty_json(obj.kwargs)

    @admin.display(description=gettext_lazy("errors"))
    def errors_display(self, obj: Any) -> str:
        if not obj.errors:
            return NOTHING
        return format_html_join(
            "",
            '<div class="taskq-error"><p><strong>{}</strong> {}</p>'
            '<pre class="taskq-pre">{}</pre></div>',
            (
                (_("Attempt %(n)d:") % {"n": n}, e.get("exception_class_path"), e.get("traceback"))
                for n, e in enumerate(obj.errors, 1)
            ),
        )

    @admin.display(description=gettext_lazy("attempt history"))
    def attempt_history(self, obj: Any) -> str:
        if not obj.attempts:
            return _("Not attempted yet.")
        rows = []
        for n in range(1, obj.attempts + 1):
            worker = obj.worker_ids[n - 1] if n <= len(obj.worker_ids) else NOTHING
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

    def final_outcome(self, obj: Any) -> str:
        """How the last attempt ended, when it did not raise."""
        raise NotImplementedError
