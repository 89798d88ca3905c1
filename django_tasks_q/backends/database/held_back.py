"""Why a waiting task is not being started: its limits (see limits.py) hold it
back. For operators' views (the admin, ``taskq list``); the claim decides for
itself, in SQL, and this reads the same figures the same way.
"""

from collections.abc import Mapping
from datetime import datetime

from django.db.models import Count, F, Min

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


def held_back_counts(
    queue_limits: Mapping[str, QueueLimit], now: datetime, database: str
) -> dict[str, int]:
    """How many due waiting tasks each queue's limits, or their tasks', hold
    back now. A GROUP BY over the running tasks and the recent starts (both
    few), then one over the waiting tasks of the groups and queues that are full."""
    running = Task.objects.using(database).filter(status=TaskStatus.RUNNING).order_by()
    starts = RateLimitStart.objects.using(database).filter(expires_at__gt=now.timestamp())
    full_groups = set(
        running.filter(limit_key__isnull=False, concurrency_limit__isnull=False)
        .values("limit_key")
        .annotate(n=Count("pk"), limit=Min("concurrency_limit"))
        .filter(n__gte=F("limit"))
        .values_list("limit_key", flat=True)
    )
    started = dict(
        starts.order_by()
        .values("key")
        .annotate(n=Count("pk"), limit=Min("rate_limit"))
        .filter(n__gte=F("limit"))
        .values_list("key", "limit")
    )
    full_groups |= {key for key in started if not key.startswith(QUEUE_GROUP_PREFIX)}
    in_queue = dict(
        running.filter(queue_name__in=list(queue_limits))
        .values("queue_name")
        .annotate(n=Count("pk"))
        .values_list("queue_name", "n")
    )
    full_queues = {
        name
        for name, limit in queue_limits.items()
        if (limit.concurrency is not None and in_queue.get(name, 0) >= limit.concurrency)
        or f"{QUEUE_GROUP_PREFIX}{name}" in started
    }
    due = Task.objects.using(database).filter(status=TaskStatus.READY, run_after__lte=now)
    counts: dict[str, int] = {}
    if full_groups:
        held = due.filter(limit_key__in=full_groups).exclude(queue_name__in=full_queues)
        for name, n in (
            held.order_by()
            .values("queue_name")
            .annotate(n=Count("pk"))
            .values_list("queue_name", "n")
        ):
            counts[name] = n
    if full_queues:
        for name, n in (
            due.filter(queue_name__in=full_queues)
            .order_by()
            .values("queue_name")
            .annotate(n=Count("pk"))
            .values_list("queue_name", "n")
        ):
            counts[name] = n
    return counts
