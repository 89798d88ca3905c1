"""How the queue is doing: the figures every backend reports
(``QueueBackend.queue_stats`` and ``workers``) for the dashboard, ``taskq
status`` and the Prometheus collector, and the helpers they share.

Each backend reads them its own way, in a few aggregate reads whose cost
follows the number of queues, not of tasks.
"""

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from django.db import connections
from django.tasks import DEFAULT_TASK_BACKEND_ALIAS, task_backends

from .backends.base import QueueBackend
from .models import ResultStatus

# The statuses counted as failed.
FAILED = [ResultStatus.FAILED, ResultStatus.EXPIRED]


@dataclass
class QueueStats:
    queue: str
    waiting: int = 0  # ready to run now
    scheduled: int = 0  # ready, but run_after is ahead
    running: int = 0
    blocked: int = 0  # waiting for other tasks to finish (after())
    failed_last_hour: int = 0
    finished_last_hour: int = 0  # the sum of the throughput bars
    oldest_waiting_since: datetime | None = None  # run_after of the longest-waiting task
    oldest_waiting_seconds: float | None = None
    # (minute, successful, failed) for each of the last minutes, oldest first.
    throughput: list = field(default_factory=list)

    def waited_since(self, run_after: datetime | None, now: datetime) -> None:
        """Note the longest-waiting task's ``run_after`` (None: nothing waits)."""
        if run_after is not None:
            self.oldest_waiting_since = run_after
            self.oldest_waiting_seconds = max(0.0, (now - run_after).total_seconds())

    def as_dict(self):
        data = asdict(self)
        data["oldest_waiting_since"] = (
            self.oldest_waiting_since.isoformat() if self.oldest_waiting_since else None
        )
        data["throughput"] = [[m.isoformat(), s, f] for m, s, f in self.throughput]
        return data


@dataclass
class WorkerEntry:
    """One worker of a backend's registry, as seen at some moment."""

    id: str
    hostname: str
    pid: int
    backend: str
    queues: list[str]  # empty: every queue
    concurrency: int
    pool: str
    started_at: datetime
    last_heartbeat_at: datetime
    live: bool  # its heartbeat is within the backend's lease
    heartbeat_age: float  # seconds

    @classmethod
    def seen_at(cls, now: datetime, lease: timedelta, **fields) -> "WorkerEntry":
        # Past the lease a worker's tasks are taken from it anyway: it is stale.
        heartbeat = fields["last_heartbeat_at"]
        return cls(
            **fields,
            live=heartbeat >= now - lease,
            heartbeat_age=(now - heartbeat).total_seconds(),
        )


def last_minutes(now: datetime, count: int) -> list[datetime]:
    """The start of each of the last ``count`` minutes, oldest first: the
    throughput bars, the current (partial) minute last."""
    current = now.replace(second=0, microsecond=0)
    return [current - timedelta(minutes=n) for n in range(count - 1, -1, -1)]


def queue_backends() -> dict[str, QueueBackend]:
    """Every backend in TASKS that has a queue to report on, by alias."""
    return {
        alias: task_backends[alias]
        for alias in task_backends
        if isinstance(task_backends[alias], QueueBackend)
    }


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


def heartbeat_timeout(backend_alias=DEFAULT_TASK_BACKEND_ALIAS) -> timedelta:
    """How stale a heartbeat may be before its worker counts as gone: the lease,
    since past it the worker's tasks are taken from it anyway."""
    return getattr(task_backends[backend_alias], "lease", timedelta(seconds=60))
