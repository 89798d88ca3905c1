"""django-tasks-q: a task queue for Django's Tasks framework.

from django_tasks_q import task

@task(max_retries=3, timeout=30)
def send_receipt(order_id): ...
"""

from importlib.metadata import version

from .exceptions import (
    InvalidSchedule,
    InvalidTaskArguments,
    QueueNotMigrated,
    QueueUnavailable,
    Retry,
    TaskAborted,
    TaskNotRegistered,
)
from .groups import GroupProgress, GroupResult
from .hooks import on_worker_start
from .schedules import periodic
from .task import Call, QTask, QTaskContext, QTaskResult, task

__version__ = version("django-tasks-q")  # pyproject.toml's, as installed

__all__ = [
    "Call",
    "GroupProgress",
    "GroupResult",
    "InvalidSchedule",
    "InvalidTaskArguments",
    "QTask",
    "QTaskContext",
    "QTaskResult",
    "QueueNotMigrated",
    "QueueUnavailable",
    "Retry",
    "TaskAborted",
    "TaskNotRegistered",
    "on_worker_start",
    "periodic",
    "task",
]
