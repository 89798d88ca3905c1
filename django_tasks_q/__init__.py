"""django-tasks-q: a task queue for Django's Tasks framework.

from django_tasks_q import task

@task(max_retries=3, timeout=30)
def send_receipt(order_id): ...
"""

from .exceptions import InvalidSchedule, InvalidTaskArguments, Retry, TaskNotRegistered
from .schedules import periodic
from .task import Call, QTask, QTaskResult, task

__all__ = [
    "Call",
    "InvalidSchedule",
    "InvalidTaskArguments",
    "QTask",
    "QTaskResult",
    "Retry",
    "TaskNotRegistered",
    "periodic",
    "task",
]
