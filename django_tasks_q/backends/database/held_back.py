"""Why a waiting task is not being started: its limits (see limits.py) hold it
back. For operators' views (the admin, ``taskq list``); the claim decides for
itself, in SQL, and this reads the same figures the same way.
"""

from collections.abc import Mapping
from datetime import datetime

from ...limits import QUEUE_GROUP_PREFIX, QueueLimit
from ...models import RateLimitStart, Task, TaskStatus

LIMIT_REACHED = "limit reached"
RATE_LIMITED = "rate limited"


def held_back(
    task: Task, queue_limits: Mapping[str, QueueLimit], now: datetime, database: str
) -> str | None:
    """``LIMIT_REACHED`` or ``RATE_LIMITED`` if ``task``, waiting and due,
    may not start now because of its task's or its queue's limits; else None.
    A few index probes, and none for a task without limits."""
    if task.status != TaskStatus.READY or task.run_after > now:
        return None
    running = Task.objects.using(database).filter(status=TaskStatus.RUNNING)
    starts = RateLimitStart.objects.using(database).filter(expires_at__gt=now.timestamp())
    if task.limit_key is not None:
        group = running.filter(limit_key=task.limit_key)
        if task.concurrency_limit is not None and group.count() >= task.concurrency_limit:
            return LIMIT_REACHED
        if task.rate_limit is not None:
            if starts.filter(key=task.limit_key).count() >= task.rate_limit:
                return RATE_LIMITED
    queue = queue_limits.get(task.queue_name)
    if queue is not None:
        in_queue = running.filter(queue_name=task.queue_name)
        if queue.concurrency is not None and in_queue.count() >= queue.concurrency:
            return LIMIT_REACHED
        if queue.rate is not None:
            key = f"{QUEUE_GROUP_PREFIX}{task.queue_name}"
            if starts.filter(key=key).count() >= queue.rate.count:
                return RATE_LIMITED
    return None
