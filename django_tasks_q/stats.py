"""How the queue is doing, in a few aggregate queries: for the dashboard, the
``taskq status`` command and the Prometheus collector.

Nothing here reads row by row: each function is one GROUP BY over an indexed
column, so its cost follows the number of queues, not of tasks.
"""

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from django.db import connections
from django.db.models import Count, Min, Q
from django.db.models.functions import TruncMinute
from django.tasks import DEFAULT_TASK_BACKEND_ALIAS, task_backends
from django.utils import timezone

from .models import ResultStatus, Task, TaskResult, TaskStatus, Worker

FAILED = [ResultStatus.FAILED, ResultStatus.EXPIRED]


@dataclass
class QueueStats:
    queue: str
    waiting: int = 0  # ready to run now
    scheduled: int = 0  # ready, but run_after is ahead
    running: int = 0
    failed_last_hour: int = 0
    finished_last_hour: int = 0  # the sum of the throughput bars
    oldest_waiting_since: datetime | None = None  # run_after of the longest-waiting task
    oldest_waiting_seconds: float | None = None
    # (minute, successful, failed) for each of the last minutes, oldest first.
    throughput: list = field(default_factory=list)

    def as_dict(self):
        data = asdict(self)
        data["oldest_waiting_since"] = (
            self.oldest_waiting_since.isoformat() if self.oldest_waiting_since else None
        )
        data["throughput"] = [[m.isoformat(), s, f] for m, s, f in self.throughput]
        return data


def configured_queues(backend_alias=DEFAULT_TASK_BACKEND_ALIAS) -> list[str]:
    return list(getattr(task_backends[backend_alias], "queues", None) or [])


def distinct_values(model, column: str, using: str) -> list[str]:
    """The distinct values of an indexed ``column``, fast on a big table.

    ``SELECT DISTINCT`` reads every row; this "loose index scan" jumps from one
    value to the next through the index, one probe per distinct value.
    """
    table = connections[using].ops.quote_name(model._meta.db_table)
    column = connections[using].ops.quote_name(column)
    with connections[using].cursor() as cursor:
        cursor.execute(
            f"""
            WITH RECURSIVE v(value) AS (
                SELECT MIN({column}) FROM {table}
                UNION ALL
                SELECT (SELECT MIN({column}) FROM {table} WHERE {column} > v.value)
                FROM v WHERE v.value IS NOT NULL
            )
            SELECT value FROM v WHERE value IS NOT NULL
            """
        )
        return [row[0] for row in cursor.fetchall()]


def queue_stats(using: str, *, queues=(), now=None, buckets=60):
    """Per queue: waiting, scheduled, running, failed in the last hour, and the
    tasks finished in each of the last ``buckets`` minutes.

    ``queues`` are listed even when empty (pass the backend's QUEUES).
    """
    now = now or timezone.now()
    since = now - timedelta(hours=1)
    stats = {name: QueueStats(name) for name in queues}
    due = Q(status=TaskStatus.READY, run_after__lte=now)
    for row in (
        Task.objects.using(using)
        .order_by()
        .values("queue_name")
        .annotate(
            waiting=Count("pk", filter=due),
            scheduled=Count("pk", filter=Q(status=TaskStatus.READY, run_after__gt=now)),
            running=Count("pk", filter=Q(status=TaskStatus.RUNNING)),
            oldest=Min("run_after", filter=due),
        )
    ):
        queue = stats.setdefault(row["queue_name"], QueueStats(row["queue_name"]))
        queue.waiting, queue.scheduled, queue.running = (
            row["waiting"],
            row["scheduled"],
            row["running"],
        )
        if row["oldest"] is not None:
            queue.oldest_waiting_since = row["oldest"]
            queue.oldest_waiting_seconds = max(0.0, (now - row["oldest"]).total_seconds())

    for row in (
        TaskResult.objects.using(using)
        .filter(finished_at__gt=since, status__in=FAILED)
        .order_by()
        .values("queue_name")
        .annotate(failed=Count("pk"))
    ):
        queue = stats.setdefault(row["queue_name"], QueueStats(row["queue_name"]))
        queue.failed_last_hour = row["failed"]

    # Throughput: one bar per minute, the current (partial) minute last.
    current = now.replace(second=0, microsecond=0)
    minutes = [current - timedelta(minutes=n) for n in range(buckets - 1, -1, -1)]
    counts = {}
    for row in (
        TaskResult.objects.using(using)
        .filter(finished_at__gte=minutes[0])
        .order_by()
        .annotate(minute=TruncMinute("finished_at"))
        .values("queue_name", "minute")
        .annotate(
            successful=Count("pk", filter=Q(status=ResultStatus.SUCCESSFUL)),
            failed=Count("pk", filter=Q(status__in=FAILED)),
        )
    ):
        stats.setdefault(row["queue_name"], QueueStats(row["queue_name"]))
        counts[row["queue_name"], row["minute"]] = (row["successful"], row["failed"])
    for queue in stats.values():
        queue.throughput = [(m, *counts.get((queue.queue, m), (0, 0))) for m in minutes]
        queue.finished_last_hour = sum(ok + failed for _, ok, failed in queue.throughput)
    return sorted(stats.values(), key=lambda queue: queue.queue)


def heartbeat_timeout(backend_alias=DEFAULT_TASK_BACKEND_ALIAS) -> timedelta:
    """How stale a heartbeat may be before its worker counts as gone: the lease,
    since past it the worker's tasks are taken from it anyway."""
    return getattr(task_backends[backend_alias], "lease", timedelta(seconds=60))


def workers(using: str, *, now=None, timeout=None):
    """Every registered worker, each with ``live`` (heartbeat within ``timeout``)."""
    now = now or timezone.now()
    timeout = timeout or heartbeat_timeout()
    rows = list(Worker.objects.using(using).order_by("hostname", "started_at"))
    for worker in rows:
        worker.live = worker.last_heartbeat_at >= now - timeout
        worker.heartbeat_age = (now - worker.last_heartbeat_at).total_seconds()
    return rows
