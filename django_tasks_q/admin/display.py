"""How the admin shows a value: JSON payloads, durations, timestamps, and a
queue row's state in an operator's words."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.db.models import Model
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext as _

from ..models import Task, TaskStatus

if TYPE_CHECKING:
    from django.utils.functional import _StrOrPromise

NOTHING = "—"  # a cell with no value


def pretty_json(value: Any) -> str:
    text = json.dumps(value, indent=2, ensure_ascii=False)
    return format_html('<pre class="taskq-pre">{}</pre>', text)


def humanize_seconds(seconds: float | None) -> str:
    if seconds is None:
        return NOTHING
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, whole_seconds = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {whole_seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def timestamp(
    field: str, description: _StrOrPromise
) -> Callable[[admin.ModelAdmin[Any], Model], str]:
    """A column showing ``field`` to the second (the full value on hover)."""

    @admin.display(description=description, ordering=field)
    def show(self: admin.ModelAdmin[Any], obj: Model) -> str:
        value: datetime | None = getattr(obj, field)
        if value is None:
            return NOTHING
        local = timezone.localtime(value)
        return format_html(
            '<time datetime="{}" title="{}">{}</time>',
            value.isoformat(),
            local.isoformat(),
            local.strftime("%Y-%m-%d %H:%M:%S"),
        )

    return show


def task_state(task: Task, now: datetime | None = None) -> str:
    """What a queue row is doing, in an operator's words."""
    if task.status == TaskStatus.RUNNING:
        return _("Aborting") if task.abort_requested_at else _("Running")
    if task.status == TaskStatus.BLOCKED:
        return _("Waiting for other tasks")
    if task.run_after > (now or timezone.now()):
        return _("Retry scheduled") if task.attempts else _("Scheduled")
    return _("Waiting")
