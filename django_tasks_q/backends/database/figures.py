"""How the database queue is doing: the figures of ``contract.QueueFigures``
for the dashboard, ``taskq status`` and the metrics.

Each read is one GROUP BY over an indexed column: its cost follows the number
of queues, not of tasks.
"""

import json
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from django.db import connections
from django.db.models import (
    Count,
    DurationField,
    ExpressionWrapper,
    F,
    Min,
    Model,
    Q,
    QuerySet,
    Sum,
)
from django.db.models.functions import TruncMinute

from ...models import ResultStatus, Task, TaskResult, TaskStatus
from ..contract import QueueStats, last_minutes


def queue_stats(using: str, queues: Iterable[str], now: datetime, buckets: int) -> list[QueueStats]:
    stats = {name: QueueStats(name) for name in queues}

    def queue(name: str) -> QueueStats:
        return stats.setdefault(name, QueueStats(name))

    due = Q(status=TaskStatus.READY, run_after__lte=now)
    for row in (
        Task.objects.using(using)
        .order_by()
        .values("queue_name")
        .annotate(
            waiting=Count("pk", filter=due),
            scheduled=Count("pk", filter=Q(status=TaskStatus.READY, run_after__gt=now)),
            running=Count("pk", filter=Q(status=TaskStatus.RUNNING)),
            blocked=Count("pk", filter=Q(status=TaskStatus.BLOCKED)),
            oldest=Min("run_after", filter=due),
        )
    ):
        found = queue(row["queue_name"])
        found.waiting, found.scheduled = row["waiting"], row["scheduled"]
        found.running, found.blocked = row["running"], row["blocked"]
        found.waited_since(row["oldest"], now)

    for failures in (
        TaskResult.objects.using(using)
        .filter(finished_at__gt=now - timedelta(hours=1), status__in=ResultStatus.FAILURES)
        .order_by()
        .values("queue_name")
        .annotate(failed=Count("pk"))
    ):
        queue(failures["queue_name"]).failed_last_hour = failures["failed"]

    # Throughput: one bar per minute, the current (partial) minute last.
    minutes = last_minutes(now, buckets)
    counts: dict[tuple[str, datetime], tuple[int, int]] = {}
    for minute in (
        TaskResult.objects.using(using)
        .filter(finished_at__gte=minutes[0])
        .order_by()
        .annotate(minute=TruncMinute("finished_at"))
        .values("queue_name", "minute")
        .annotate(
            successful=Count("pk", filter=Q(status=ResultStatus.SUCCESSFUL)),
            failed=Count("pk", filter=Q(status__in=ResultStatus.FAILURES)),
        )
    ):
        queue(minute["queue_name"])
        counts[minute["queue_name"], minute["minute"]] = (minute["successful"], minute["failed"])
    for found in stats.values():
        found.throughput = [(m, *counts.get((found.queue, m), (0, 0))) for m in minutes]
        found.finished_last_hour = sum(ok + failed for _, ok, failed in found.throughput)
    return sorted(stats.values(), key=lambda found: found.queue)


def _finished_since(using: str, since: datetime) -> QuerySet[TaskResult]:
    return TaskResult.objects.using(using).filter(finished_at__gt=since).order_by()


def finished_counts(using: str, since: datetime) -> dict[tuple[str, str], int]:
    rows = _finished_since(using, since).values("queue_name", "status").annotate(n=Count("pk"))
    return {(row["queue_name"], row["status"]): row["n"] for row in rows}


def run_times(
    using: str, since: datetime, bounds: Iterable[float]
) -> dict[str, tuple[list[int], int, float]]:
    # The last attempt's: from the first start would count retry waits too.
    duration = ExpressionWrapper(
        F("finished_at") - F("last_attempted_at"), output_field=DurationField()
    )
    ran = (
        _finished_since(using, since)
        .filter(last_attempted_at__isnull=False)
        .exclude(status=ResultStatus.CANCELLED)
        .annotate(duration=duration)
    )
    le = {f"le_{i}": timedelta(seconds=bound) for i, bound in enumerate(bounds)}
    rows: Iterable[Mapping[str, Any]] = ran.values("queue_name").annotate(
        total=Count("pk"),
        seconds=Sum("duration"),
        **{key: Count("pk", filter=Q(duration__lte=bound)) for key, bound in le.items()},
    )
    return {
        row["queue_name"]: (
            [row[key] for key in le],
            row["total"],
            row["seconds"].total_seconds() if row["seconds"] else 0.0,
        )
        for row in rows
    }


def distinct_values(model: type[Model], column: str, using: str) -> list[str]:
    """The distinct values of an indexed ``column`` of ``model``'s table, for
    the admin's filters: a loose index scan, one probe per value."""
    from .statements import distinct_values as scan

    with connections[using].cursor() as cursor:
        return scan(cursor, model._meta.db_table, column)


def planner_estimate(queryset: QuerySet[Any]) -> int:
    """How many rows PostgreSQL's planner expects ``queryset`` to return: a
    millisecond, where COUNT(*) reads the whole table."""
    sql, params = queryset.order_by().query.get_compiler(using=queryset.db).as_sql()
    with connections[queryset.db].cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])
