"""The list filters of the queue and history pages."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from ..backends.database import figures
from ..compat import task_backends
from ..models import TaskQuerySet

if TYPE_CHECKING:
    from django.utils.functional import _StrOrPromise

    from .base import QueueModelAdmin


class ValuesFilter(admin.SimpleListFilter):
    """The distinct values of a column, read through its index (not SELECT DISTINCT)."""

    column = ""

    def lookups(
        self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]
    ) -> list[tuple[str, _StrOrPromise]]:
        queue_admin = cast("QueueModelAdmin", model_admin)  # the only admin using it
        values = set(figures.distinct_values(queue_admin.model, self.column, queue_admin.using))
        values |= set(self.extra_values(queue_admin))
        return [(value, value) for value in sorted(values)]

    def extra_values(self, model_admin: QueueModelAdmin) -> Iterable[str]:
        return []

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value():
            return queryset.filter(**{self.column: self.value()})
        return queryset


class QueueFilter(ValuesFilter):
    title = _("queue")
    parameter_name = column = "queue_name"

    def extra_values(self, model_admin: QueueModelAdmin) -> Iterable[str]:
        # The configured queues, even before any task has used them.
        return sorted(task_backends[model_admin.backend_alias].queues)


class TaskNameFilter(ValuesFilter):
    title = _("task")
    parameter_name = column = "task_path"


class StateFilter(admin.SimpleListFilter):
    title = _("state")
    parameter_name = "state"

    def lookups(
        self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]
    ) -> list[tuple[str, _StrOrPromise]]:
        return [
            ("waiting", _("Waiting")),
            ("scheduled", _("Scheduled")),
            ("retrying", _("Retry scheduled")),
            ("running", _("Running")),
            ("blocked", _("Waiting for other tasks")),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        state = self.value()
        if state is None or state not in dict(self.lookup_choices):  # not one of ours
            return queryset
        return cast(TaskQuerySet, queryset).in_state(state, timezone.now())
