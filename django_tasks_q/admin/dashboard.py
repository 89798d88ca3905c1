"""The dashboard: every backend's queues and workers, Redis too, on the
admin index's "Dashboard" link."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db.models import Model
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils import timezone
from django.utils.text import capfirst
from django.utils.translation import gettext as _

from ..backends.base import QueueBackend, queue_backends
from ..backends.contract import QueueStats, WorkerEntry
from ..backends.database import operations
from .base import BackendAdmin
from .display import ago, humanize_seconds


@dataclass
class ShownQueue(QueueStats):
    """A queue's figures with what the dashboard draws of them."""

    chart: dict[str, Any] = field(default_factory=dict)
    oldest_waiting: str = ""

    @classmethod
    def of(cls, stats: QueueStats) -> ShownQueue:
        figures = {f.name: getattr(stats, f.name) for f in fields(stats)}
        return cls(
            **figures,
            chart=throughput_chart(stats.throughput),
            oldest_waiting=humanize_seconds(stats.oldest_waiting_seconds),
        )


@dataclass
class ShownWorker(WorkerEntry):
    """A live worker with its ages in words."""

    started: str = ""
    last_heartbeat: str = ""

    @classmethod
    def of(cls, worker: WorkerEntry, now: datetime) -> ShownWorker:
        figures = {f.name: getattr(worker, f.name) for f in fields(worker)}
        return cls(
            **figures,
            started=ago(worker.started_at, now),
            last_heartbeat=ago(worker.last_heartbeat_at, now),
        )


def throughput_chart(
    throughput: list[tuple[datetime, int, int]], width: int = 360, height: int = 84
) -> dict[str, Any]:
    """Bars for an inline SVG, successful (bottom) and failed (top) per minute,
    with a count axis (0 and the peak, on the left) and a time axis (the first,
    middle and last minute, below)."""
    plot_x, plot_height = 24, height - 16  # room for the axes' labels
    peak = max((ok + failed for _minute, ok, failed in throughput), default=0)
    scale = peak or 1
    step = (width - plot_x) / max(len(throughput), 1)
    bars = []
    for i, (minute, ok, failed) in enumerate(throughput):
        ok_height = plot_height * ok / scale
        failed_height = plot_height * failed / scale
        bars.append(
            {
                "x": round(plot_x + i * step, 2),
                "width": round(max(step - 1, 1), 2),
                "ok_y": round(plot_height - ok_height, 2),
                "ok_height": round(ok_height, 2),
                "failed_y": round(plot_height - ok_height - failed_height, 2),
                "failed_height": round(failed_height, 2),
                "label": f"{timezone.localtime(minute):%H:%M}: {ok} ok, {failed} failed",
            }
        )
    time_labels = []
    if throughput:
        ends = {"start": 0, "middle": len(throughput) // 2, "end": len(throughput) - 1}
        for anchor, i in ends.items():
            x = {"start": plot_x, "middle": plot_x + (i + 0.5) * step, "end": width}[anchor]
            text = f"{timezone.localtime(throughput[i][0]):%H:%M}"
            time_labels.append({"x": round(x, 2), "y": height - 3, "anchor": anchor, "text": text})
    return {
        "bars": bars,
        "width": width,
        "height": height,
        "plot_x": plot_x,
        "plot_height": plot_height,
        "peak": peak,
        "count_label": {"x": plot_x - 4, "y": 10, "text": str(peak)},
        "time_labels": time_labels,
    }


class DashboardAdmin(BackendAdmin):
    """The admin index's link to the dashboard: its "changelist" is the dashboard."""

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        # Staff (admin_view checks is_staff) with any permission on the queue.
        return request.user.has_module_perms(self.opts.app_label)

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def get_model_perms(self, request: HttpRequest) -> dict[str, bool]:
        return {"view": self.has_view_permission(request)}

    def get_urls(self) -> list[URLPattern]:
        name = f"{self.opts.app_label}_{self.opts.model_name}_changelist"
        return [path("", self.admin_site.admin_view(self.changelist_view), name=name)]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> TemplateResponse:
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

    def backend_section(self, alias: str, backend: QueueBackend, now: datetime) -> dict[str, Any]:
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
        return {
            **section,
            "queues": [ShownQueue.of(queue) for queue in queues],
            "live_workers": [ShownWorker.of(w, now) for w in workers if w.live],
            "stale_workers": len([w for w in workers if not w.live]),
        }
