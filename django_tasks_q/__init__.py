"""django-tasks-q: a task queue for Django's Tasks framework.

from django_tasks_q import task

@task(max_retries=3, timeout=30)
def send_receipt(order_id): ...
"""

from typing import Any

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


def __getattr__(name: str) -> Any:
    # Read when asked for: importlib.metadata is a lot to load into every
    # process (each worker included) for a string few of them need.
    if name == "__version__":
        from importlib.metadata import version

        return version("django-tasks-q")  # pyproject.toml's, as installed
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
