"""The queue in Django's admin: waiting and running tasks, their history, the
workers, periodic schedules, and a dashboard.

Read-only: nobody hand-edits a task a worker may be running. Every change is
one of the operator's actions declared in ``actions.py`` (the ``taskq``
command's too): it asks for confirmation and needs the model's change (or
delete) permission.

The lists show the queue of the default task backend (``backend_alias``);
subclass and register again to show another. The dashboard shows every
backend's queues and workers, Redis too.
"""

from django.contrib import admin

from ..models import Dashboard, Schedule, Task, TaskResult, Worker
from .dashboard import DashboardAdmin
from .schedules import ScheduleAdmin
from .tasks import TaskAdmin, TaskResultAdmin
from .workers import WorkerAdmin

__all__ = ["DashboardAdmin", "ScheduleAdmin", "TaskAdmin", "TaskResultAdmin", "WorkerAdmin"]

admin.site.register(Task, TaskAdmin)
admin.site.register(TaskResult, TaskResultAdmin)
admin.site.register(Worker, WorkerAdmin)
admin.site.register(Schedule, ScheduleAdmin)
admin.site.register(Dashboard, DashboardAdmin)
