"""What the queue's parts agree on: statuses, the values they hand each other,
and what the worker and the operators need of a store.

A store (the database, Redis, or a fake in a test) is written against the two
Protocols at the end: ``WorkerStore`` for ``runtaskworker``, ``QueueFigures``
for the dashboard, ``taskq`` and the metrics. Nothing here imports the models,
so a backend can be imported (and ``manage.py check`` can say what is wrong)
even when the app is missing from ``INSTALLED_APPS``.
"""

from abc import abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from enum import nonmember
from typing import Any, ClassVar, Protocol

from django.db import models
from django.utils.translation import gettext_lazy as _

from ..compat import Task, TaskResultStatus
from ..task import QTask, QTaskResult


class TaskStatus(models.TextChoices):
    """Where a task in the queue stands. Django's API reports all three as
    READY or RUNNING; operators see "waiting" and "scheduled" for READY,
    depending on whether its ``run_after`` has come."""

    READY = "READY", _("Ready")
    RUNNING = "RUNNING", _("Running")
    # Waiting for other tasks to end (after()): no worker claims it until then.
    BLOCKED = "BLOCKED", _("Blocked by other tasks")

    # Not started yet: what cancel() may take out of the queue.
    NOT_STARTED = nonmember(("READY", "BLOCKED"))

    @property
    def django_status(self) -> TaskResultStatus:
        if self == TaskStatus.RUNNING:
            return TaskResultStatus.RUNNING
        return TaskResultStatus.READY  # a blocked task has not started either


class ResultStatus(models.TextChoices):
    """How a finished task ended. Django's API knows only SUCCESSFUL and FAILED."""

    SUCCESSFUL = "SUCCESSFUL", _("Successful")
    FAILED = "FAILED", _("Failed")
    CANCELLED = "CANCELLED", _("Cancelled")
    EXPIRED = "EXPIRED", _("Expired")

    # Every ending but success: what an operator can retry.
    UNSUCCESSFUL = nonmember(("FAILED", "CANCELLED", "EXPIRED"))
    # What the figures count as failures: a cancel is someone's choice, not a fault.
    FAILURES = nonmember(("FAILED", "EXPIRED"))

    @property
    def django_status(self) -> TaskResultStatus:
        if self == ResultStatus.SUCCESSFUL:
            return TaskResultStatus.SUCCESSFUL
        return TaskResultStatus.FAILED


def django_status(status: str) -> TaskResultStatus:
    """Django's status for a stored one (a TaskStatus or a ResultStatus)."""
    if status in TaskStatus.values:
        return TaskStatus(status).django_status
    return ResultStatus(status).django_status


class RunOn(models.TextChoices):
    """When a blocked task (``after()``) becomes ready."""

    SUCCESS = "SUCCESS", _("Once every task it waits for succeeded")
    FAILURE = "FAILURE", _("Once a task it waits for failed")


# -- what the worker and a store hand each other ------------------------------------

# The longest worker id a store holds (the Worker table's key, a Task's worker_id).
WORKER_ID_MAX_LENGTH = 64


def stored_errors(value: Any) -> list[dict[str, str]]:
    """A task's errors as read from its store: a list of
    ``{"exception_class_path", "traceback"}``. Anything else there (a row
    edited by hand) is left out, rather than failing the worker or the result."""
    if not isinstance(value, list):
        return []
    return [
        error
        for error in value
        if isinstance(error, dict)
        and isinstance(error.get("exception_class_path"), str)
        and isinstance(error.get("traceback"), str)
    ]


@dataclass(slots=True)
class ClaimedTask:
    """A task a worker holds: what it needs to run it and report on it."""

    id: str
    task_path: str
    queue_name: str
    priority: int
    args: list[Any]
    kwargs: dict[str, Any]
    attempts: int  # including the one being made now (not yet, if claimed ahead)
    max_attempts: int
    errors: list[dict[str, str]]
    worker_ids: list[str]
    enqueued_at: datetime
    started_at: datetime | None  # None only if claimed ahead, never started
    last_attempted_at: datetime
    run_after: datetime  # when this attempt was due: its queue wait is from here
    # Claimed ahead of a free slot: the store counts no attempt until the
    # worker starts it and says so (record_and_claim's ``started``). If the
    # worker dies first, the task goes back as it was.
    ahead: bool = False
    # The trace context enqueue() stored (see tracing.py): the run's span is its child.
    trace_context: dict[str, str] | None = None


@dataclass(slots=True)
class Outcome:
    """How one attempt ended: ``status`` is a ResultStatus, or ``RETRY``."""

    RETRY: ClassVar[str] = "RETRY"

    claimed: ClaimedTask
    status: str
    finished_at: datetime
    duration: float  # seconds
    return_value: Any = None  # already JSON-normalised
    error: dict[str, str] | None = None  # {"exception_class_path", "traceback"}
    error_line: str | None = None  # the error's type and message, for the worker's log
    retry_at: datetime | None = None
    # The result task_started was sent with, where the attempt ran in the
    # worker's own process: task_finished sends the same object, ended. None
    # from a child process (the pipe carries data) or an attempt never started.
    result: QTaskResult | None = None

    @property
    def errors(self) -> list[dict[str, str]]:
        """The task's errors including this attempt's."""
        return self.claimed.errors + [self.error] if self.error else self.claimed.errors


@dataclass(slots=True)
class EnqueueBatch:
    """One ``enqueue()`` or ``enqueue_many()``, checked and encoded: what a store
    writes. Built once, by ``QueueBackend.prepare``, for every store."""

    task: QTask
    ids: list[str]  # UUIDv7 strings, one per call
    args: list[list[Any]]
    kwargs: list[dict[str, Any]]
    enqueued_at: datetime
    run_after: datetime
    expires_at: datetime | None
    max_attempts: int  # 1 + the task's max_retries
    unique_keys: list[str] | None  # one per call, or None for a task without keys
    waits_for: tuple[str, ...]  # after(): the ids of the tasks it waits for
    run_on: str  # RunOn, for a task that waits
    # For a task with limits: the group each call counts in (limits.limit_keys).
    limit_keys: list[str] | None
    group_id: str | None = None  # enqueue_group(): the group every call joins
    # The enqueue span's context, stored with the tasks (see tracing.py); None untraced.
    trace_context: dict[str, str] | None = None
    # The results enqueue() returns: READY, one per call, in order. A store
    # replaces those of calls it did not queue (a unique key already held).
    results: list[QTaskResult] = field(default_factory=list)

    @property
    def due(self) -> bool:
        """Whether the tasks may run at once (so idle workers should wake)."""
        return self.run_after <= self.enqueued_at and not self.waits_for


@dataclass
class QueueStats:
    """How one queue is doing, as the dashboard, ``taskq status`` and the metrics show it."""

    queue: str
    waiting: int = 0  # ready to run now
    scheduled: int = 0  # ready, but run_after is ahead
    running: int = 0
    blocked: int = 0  # waiting for other tasks to end (after())
    held_back: int = 0  # of those waiting: their limits let none start now (database backend)
    failed_last_hour: int = 0
    finished_last_hour: int = 0  # the sum of the throughput bars
    oldest_waiting_since: datetime | None = None  # run_after of the longest-waiting task
    oldest_waiting_seconds: float | None = None
    # (minute, successful, failed) for each of the last minutes, oldest first.
    throughput: list[tuple[datetime, int, int]] = field(default_factory=list)

    def waited_since(self, run_after: datetime | None, now: datetime) -> None:
        """Note the longest-waiting task's ``run_after`` (None: nothing waits)."""
        if run_after is not None:
            self.oldest_waiting_since = run_after
            self.oldest_waiting_seconds = max(0.0, (now - run_after).total_seconds())

    def as_dict(self) -> dict[str, Any]:
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
    def seen_at(cls, now: datetime, lease: timedelta, **fields: Any) -> "WorkerEntry":
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


class Listener(Protocol):
    """A store's wake-up channel, running in its own thread until stopped."""

    @property
    def connection_name(self) -> str:
        """What the worker's log calls it, e.g. "LISTEN connection"."""
        ...

    def stop(self) -> None: ...


# -- what each side needs of a store -------------------------------------------------


class WorkerStore(Protocol):
    """What ``runtaskworker`` needs of a store. Every call works on a batch."""

    alias: str
    database: str  # the DATABASES alias of its tables: the Schedule table, for @periodic
    poll_interval: float  # seconds an idle worker waits between looks
    lease: timedelta  # how long a claim holds without renewal
    crash_retries: int  # re-runs after crashes not counted against max_retries
    task_modules: tuple[str, ...]  # imported at start, besides each app's "tasks"
    supports_periodic: bool  # whether it keeps @periodic schedules
    # What the worker treats as the store being briefly unreachable: it logs
    # them, backs off and tries again, keeping what it could not record. Any
    # other error recording a batch is the store refusing an outcome: the
    # worker records them one by one, failing only the refused ones.
    transient_errors: tuple[type[BaseException], ...]

    @abstractmethod
    def record_and_claim(
        self,
        outcomes: list[Outcome],
        queues: list[str] | None,
        limit: int,
        worker_id: str,
        *,
        started: Sequence[ClaimedTask] = (),
        run_now: int | None = None,
    ) -> tuple[list[Outcome], list[ClaimedTask]]:
        """Count the attempts ``started`` (tasks ``worker_id`` claimed ahead
        and has since started, as its ClaimedTasks say), store ``outcomes``
        (returning those of tasks ``worker_id`` still held), then take up to
        ``limit`` ready tasks from ``queues`` (None: any queue) for
        ``worker_id``, of which the first ``run_now`` (None: all) start at
        once and the rest are claimed ahead. One call, so a store can do it
        all at once."""

    @abstractmethod
    def release(self, task_ids: list[str], worker_id: str) -> None:
        """Hand tasks back unfinished, so another worker takes them at once."""

    @abstractmethod
    def register_worker(
        self, worker_id: str, *, queues: list[str] | None, concurrency: int, pool: str
    ) -> None:
        """Add the worker to the registry the admin and CLI read."""

    @abstractmethod
    def heartbeat(self, worker_id: str, task_ids: list[str]) -> bool:
        """Renew the leases of ``task_ids`` (the tasks the worker holds) and its
        registry entry; False if the entry was gone (it was taken for dead)."""

    @abstractmethod
    def unregister_worker(self, worker_id: str) -> None: ...

    @abstractmethod
    def recover(self) -> int:
        """Requeue (or, out of attempts, fail) tasks whose lease expired, and
        forget dead workers. Any worker may call it; returns tasks recovered."""

    @abstractmethod
    def expire_tasks(self) -> int:
        """Record waiting tasks past their deadline (``expires_at``) as EXPIRED,
        in batches. Any worker may call it; returns how many."""

    @abstractmethod
    def prune_results(self, limit: int = 1000) -> int:
        """Delete up to ``limit`` results older than the backend's retention;
        returns how many. Stores whose results expire by themselves do nothing."""

    @abstractmethod
    def aborts_requested(self, worker_id: str, task_ids: list[str]) -> list[str]:
        """Those of ``task_ids`` (tasks ``worker_id`` holds) someone asked to abort."""

    @abstractmethod
    def listen(
        self,
        queues: list[str] | None,
        wake: Callable[[], None],
        *,
        worker_id: str,
        on_abort: Callable[[], None],
    ) -> Listener | None:
        """Start calling ``wake()`` when tasks for ``queues`` arrive, and
        ``on_abort()`` when someone asks to abort a task ``worker_id`` holds;
        None where only polling works."""

    @abstractmethod
    def resolve_task(self, task_path: str, priority: int, queue_name: str) -> QTask:
        """The registered task a row names, carrying the row's priority and queue
        (a stand-in that fails if it is not registered)."""

    @abstractmethod
    def result_for_claimed(self, claimed: ClaimedTask, task: Task) -> QTaskResult:
        """The API's view of a claimed task, running: for task_started."""

    @abstractmethod
    def end_result(self, result: QTaskResult, outcome: Outcome) -> QTaskResult:
        """``result`` (``result_for_claimed``'s) changed in place to how
        ``outcome`` ended the task, for task_finished."""


class QueueFigures(Protocol):
    """What the dashboard, ``taskq`` and the metrics read of a store: a few
    aggregate reads whose cost follows the number of queues, not of tasks."""

    alias: str
    queues: set[str]  # the backend's QUEUES
    lease: timedelta
    transient_errors: tuple[type[BaseException], ...]

    @abstractmethod
    def queue_stats(
        self, queues: Iterable[str] = (), *, now: datetime | None = None, buckets: int = 60
    ) -> list[QueueStats]:
        """Per queue, sorted by name: tasks waiting, scheduled, running and
        blocked, failed in the last hour, the longest wait, and tasks finished
        in each of the last ``buckets`` minutes. ``queues`` are listed even
        when empty (pass the backend's QUEUES)."""

    @abstractmethod
    def finished_counts(self, since: datetime, now: datetime) -> dict[tuple[str, str], int]:
        """How many tasks finished since ``since``, by (queue, status)."""

    @abstractmethod
    def run_times(
        self, since: datetime, bounds: Iterable[float]
    ) -> dict[str, tuple[list[int], int, float]]:
        """Per queue, for the tasks that ran and finished since ``since``: how
        many ran for at most each of ``bounds`` seconds, how many in all, and
        their summed seconds. Stores that keep no run times return {}."""

    @abstractmethod
    def workers(self, now: datetime | None = None) -> list[WorkerEntry]:
        """The registry, sorted by host and start."""

    @abstractmethod
    def purge(self, queue_name: str) -> int:
        """Delete every waiting (ready or scheduled) task of ``queue_name``;
        running ones finish as usual. Returns how many were deleted."""
