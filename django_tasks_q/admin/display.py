"""How the admin shows a value: JSON payloads, durations, timestamps and ages,
errors in a line, long ids, and a queue row's state in an operator's words."""

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


def ago(moment: datetime, now: datetime | None = None) -> str:
    """How long ago ``moment`` was (or how soon it is), to a unit and its next:
    "7 s ago", "3 min ago", "1 h 2 min ago", "in 5 min". Every relative time
    the admin shows reads this way."""
    seconds = int(((now or timezone.now()) - moment).total_seconds())
    span = abs(seconds)
    if span < 60:
        text = f"{span} s"
    elif span < 3600:
        text = f"{span // 60} min"
    elif span < 86400:
        hours, minutes = divmod(span // 60, 60)
        text = f"{hours} h {minutes} min" if minutes else f"{hours} h"
    else:
        days, hours = divmod(span // 3600, 24)
        text = f"{days} d {hours} h" if hours else f"{days} d"
    return _("%(span)s ago") % {"span": text} if seconds >= 0 else _("in %(span)s") % {"span": text}


def timestamp(
    field: str, description: _StrOrPromise
) -> Callable[[admin.ModelAdmin[Any], Model], str]:
    """A column showing ``field``: its age in lists, to the second and its age
    on detail pages (admin.css hides the rest in lists); the full value on hover."""

    @admin.display(description=description, ordering=field)
    def show(self: admin.ModelAdmin[Any], obj: Model) -> str:
        value: datetime | None = getattr(obj, field)
        if value is None:
            return NOTHING
        local = timezone.localtime(value)
        return format_html(
            '<time datetime="{}" title="{}"><span class="taskq-exact">{}</span> '
            '<span class="taskq-ago">{}</span></time>',
            value.isoformat(),
            local.isoformat(),
            local.strftime("%Y-%m-%d %H:%M:%S"),
            ago(value),
        )

    return show


def clipped(text: str, title: str | None = None) -> str:
    """``text`` on one line, cut with an ellipsis where its column ends (admin.css);
    all of it (or ``title``) on hover."""
    return format_html('<span class="taskq-clip" title="{}">{}</span>', title or text, text)


def error_line(exception_class_path: str, traceback: str) -> tuple[str, str]:
    """An error as the last line of its traceback says it: (the class's name and
    the message's first line, the class and the whole message)."""
    names = (exception_class_path, exception_class_path.removeprefix("builtins."))
    lines = traceback.rstrip("\n").splitlines()
    # The exception's own line: the last one that starts with its class
    # (chained exceptions come before it).
    for n in range(len(lines) - 1, -1, -1):
        if any(lines[n] == name or lines[n].startswith(f"{name}: ") for name in names):
            whole = "\n".join(lines[n:])
            message = lines[n].partition(": ")[2]
            break
    else:
        whole, message = exception_class_path, ""
    short_name = exception_class_path.rpartition(".")[2]
    return (f"{short_name}: {message}" if message else short_name), whole


def task_state(task: Task, now: datetime | None = None) -> str:
    """What a queue row is doing, in an operator's words."""
    if task.status == TaskStatus.RUNNING:
        return _("Aborting") if task.abort_requested_at else _("Running")
    if task.status == TaskStatus.BLOCKED:
        return _("Waiting for other tasks")
    if task.run_after > (now or timezone.now()):
        return _("Retry scheduled") if task.attempts else _("Scheduled")
    return _("Waiting")
