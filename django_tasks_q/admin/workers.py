"""The registered workers (the database backend's registry)."""

from __future__ import annotations

from datetime import datetime

from django.contrib import admin
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from ..models import Worker
from .base import BackendAdmin
from .display import clipped, timestamp


class WorkerAdmin(BackendAdmin):
    # What fits a 1366 px screen (admin.css): the id holds the host and the
    # pid; the detail page has the rest.
    list_display = (
        "worker",
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

    def has_change_permission(self, request: HttpRequest, obj: Worker | None = None) -> bool:
        return False  # the worker keeps its own row; a stale one may be deleted

    started = timestamp("started_at", gettext_lazy("started"))
    last_heartbeat = timestamp("last_heartbeat_at", gettext_lazy("last heartbeat"))

    @admin.display(description=gettext_lazy("worker"), ordering="id")
    def worker(self, obj: Worker) -> str:
        return clipped(obj.id)

    @admin.display(description=gettext_lazy("queues"))
    def queue_list(self, obj: Worker) -> str:
        return clipped(", ".join(obj.queues) or _("(all)"))

    @admin.display(description=gettext_lazy("live"), boolean=True)
    def live(self, obj: Worker) -> bool:
        last_heartbeat: datetime = obj.last_heartbeat_at
        return last_heartbeat >= timezone.now() - self.backend.lease
