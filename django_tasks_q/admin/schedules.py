"""Periodic schedules: declared in code (``@periodic``) and kept by the
workers; read-only here, except that they can be paused and resumed."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from ..models import Schedule, Task, TaskResult
from .base import BackendAdmin
from .display import NOTHING, timestamp
from .operator_actions import admin_actions


class ScheduleAdmin(BackendAdmin):
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
    actions = admin_actions(Schedule)  # no confirmation: each is undone by the other
    fields = list_display
    readonly_fields = ("next_tick", "last_tick", "last_task")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        # Whether the last task has finished says which page to link to.
        finished = TaskResult.objects.using(self.using).filter(pk=OuterRef("last_task_id"))
        return super().get_queryset(request).annotate(finished=Exists(finished))

    def has_delete_permission(self, request: HttpRequest, obj: Schedule | None = None) -> bool:
        return False  # the workers keep the rows of the declared schedules

    def has_change_permission(self, request: HttpRequest, obj: Schedule | None = None) -> bool:
        # The change permission allows pausing and resuming; no field is edited.
        return obj is None and super().has_change_permission(request)

    last_tick = timestamp("last_tick_at", gettext_lazy("last tick"))
    next_tick_time = timestamp("next_tick_at", gettext_lazy("next tick"))

    @admin.display(description=gettext_lazy("next tick"), ordering="next_tick_at")
    def next_tick(self, obj: Schedule) -> str:
        return _("paused") if obj.paused else self.next_tick_time(obj)

    @admin.display(description=gettext_lazy("last task"))
    def last_task(self, obj: Any) -> str:
        if obj.last_task_id is None:
            return NOTHING
        model = TaskResult if obj.finished else Task
        if not self.admin_site.is_registered(model):
            return str(obj.last_task_id)
        url = reverse(
            f"admin:{model._meta.app_label}_{model._meta.model_name}_change",
            args=[obj.last_task_id],
            current_app=self.admin_site.name,
        )
        return format_html('<a href="{}">{}</a>', url, obj.last_task_id)
