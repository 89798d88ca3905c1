"""The queue (``Task``: hot, small) and its history (``TaskResult``: cold, append-only).

A task lives in ``Task`` while it is waiting, scheduled or running, and moves to
``TaskResult`` in the transaction that records how it ended. Keeping finished
rows out of ``Task`` keeps the claim query's table and index small however
much history piles up.
"""

from datetime import datetime

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from .backends.contract import WORKER_ID_MAX_LENGTH, ResultStatus, RunOn, TaskStatus
from .ids import uuid7
from .limits import LIMIT_KEY_MAX_LENGTH

__all__ = [
    "RateLimitStart",
    "ResultStatus",
    "RunOn",
    "Schedule",
    "Task",
    "TaskDependency",
    "TaskGroup",
    "TaskResult",
    "TaskStatus",
    "Worker",
]


class TaskQuerySet(models.QuerySet):
    def in_state(self, state: str, now: datetime) -> "TaskQuerySet":
        """The tasks in one of the states operators see (the admin's filter,
        ``taskq list``): waiting, scheduled, retrying, running or blocked."""
        ready = Q(status=TaskStatus.READY)
        return {
            "waiting": lambda: self.filter(ready, run_after__lte=now),
            "scheduled": lambda: self.filter(ready, run_after__gt=now),
            "retrying": lambda: self.filter(ready, run_after__gt=now, attempts__gt=0),
            "running": lambda: self.filter(status=TaskStatus.RUNNING),
            "blocked": lambda: self.filter(status=TaskStatus.BLOCKED),
        }[state]()


class Task(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    task_path = models.CharField(max_length=255)
    queue_name = models.CharField(max_length=100)
    priority = models.SmallIntegerField(default=0)
    status = models.CharField(max_length=10, choices=TaskStatus.choices, default=TaskStatus.READY)
    args = models.JSONField(default=list)
    kwargs = models.JSONField(default=dict)
    run_after = models.DateTimeField()
    enqueued_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    last_attempted_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    # 1 + the task's max_retries when enqueued: lease recovery decides in SQL.
    max_attempts = models.PositiveIntegerField(default=1)
    # One {"exception_class_path", "traceback"} per failed attempt, oldest first.
    errors = models.JSONField(default=list)
    # Every worker that claimed the task, one entry per attempt.
    worker_ids = models.JSONField(default=list)
    # The worker holding the task now, and until when its claim is good.
    worker_id = models.CharField(max_length=WORKER_ID_MAX_LENGTH, null=True, blank=True)  # noqa: DJ001
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # Claimed by worker_id ahead of a free slot and not started yet: no attempt
    # is counted until the worker starts it, and if the worker dies first the
    # task goes back as it was (see statements.py, "Claimed ahead").
    claimed_ahead = models.BooleanField(db_default=False)  # raw INSERTs leave it out
    # Its worker was lost while it held the task claimed ahead, and it went
    # back uncounted: every later claim starts it (the one uncounted return).
    lost_ahead = models.BooleanField(db_default=False)
    # Enqueueing the same key again while this row exists returns this task.
    unique_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    # Not started by then: not run, recorded as EXPIRED.
    expires_at = models.DateTimeField(null=True, blank=True)
    # Someone asked for the running task to stop (cooperatively, or hard in
    # the process pool); the worker sees it and ends the attempt as CANCELLED.
    abort_requested_at = models.DateTimeField(null=True, blank=True)
    # For a BLOCKED task: whether it runs when the tasks it waits for succeed
    # or when one of them fails.
    run_on = models.CharField(max_length=7, choices=RunOn.choices, null=True, blank=True)  # noqa: DJ001
    # Something waits for this one (a BLOCKED task, or a wait() call): its
    # ending must be passed on (see backends/chains.py).
    has_dependents = models.BooleanField(db_default=False)  # raw INSERTs leave it out
    # The TaskGroup this task is a member of (enqueue_group), if any.
    group_id = models.UUIDField(null=True, blank=True)
    # The trace context enqueue() ran in (tracing.py: W3C traceparent and
    # tracestate); the worker's span for each attempt is its child.
    trace_context = models.JSONField(null=True, blank=True)
    # A task with concurrency or rate limits (limits.py): the group it counts
    # in ("<task path>" or "<task path>:<key>") and the limits, so that the
    # claim enforces them without knowing the task. NULL: no task limits.
    limit_key = models.CharField(max_length=LIMIT_KEY_MAX_LENGTH, null=True, blank=True)  # noqa: DJ001
    concurrency_limit = models.PositiveIntegerField(null=True, blank=True)
    rate_limit = models.PositiveIntegerField(null=True, blank=True)  # starts per rate_period
    rate_period = models.PositiveIntegerField(null=True, blank=True)  # seconds

    objects = TaskQuerySet.as_manager()

    class Meta:
        verbose_name = _("queued task")
        constraints = [
            # Deduplication by the database, not by check-then-insert: only
            # rows still in the queue (waiting or running) hold their key.
            models.UniqueConstraint(
                fields=["unique_key"],
                condition=Q(unique_key__isnull=False),
                name="taskq_task_unique_key",
            ),
        ]
        indexes = [
            # The claim query's index: ready rows only, in claim order.
            models.Index(
                fields=["queue_name", "-priority", "run_after", "id"],
                condition=Q(status=TaskStatus.READY),
                name="taskq_task_ready",
            ),
            # Lease recovery: running rows whose worker stopped renewing.
            models.Index(
                fields=["lease_expires_at"],
                condition=Q(status=TaskStatus.RUNNING),
                name="taskq_task_lease",
            ),
            # The limited claim: limited ready rows only, in claim order.
            models.Index(
                fields=["queue_name", "-priority", "run_after", "id"],
                condition=Q(status=TaskStatus.READY, limit_key__isnull=False),
                name="taskq_task_limited",
            ),
            # How many of a group run now (running rows are few; limited ones fewer).
            models.Index(
                fields=["limit_key"],
                condition=Q(status=TaskStatus.RUNNING, limit_key__isnull=False),
                name="taskq_task_limit_running",
            ),
            # The expiry sweep: ready rows with a deadline, soonest first.
            models.Index(
                fields=["expires_at"],
                condition=Q(status=TaskStatus.READY, expires_at__isnull=False),
                name="taskq_task_expiry",
            ),
            # A group's progress: its members in the queue, counted by status.
            models.Index(
                fields=["group_id", "status"],
                condition=Q(group_id__isnull=False),
                name="taskq_task_group",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.task_path} ({self.id})"


class TaskResult(models.Model):
    id = models.UUIDField(primary_key=True, editable=False)
    task_path = models.CharField(max_length=255)
    queue_name = models.CharField(max_length=100)
    priority = models.SmallIntegerField(default=0)
    status = models.CharField(max_length=10, choices=ResultStatus.choices)
    args = models.JSONField(default=list)
    kwargs = models.JSONField(default=dict)
    return_value = models.JSONField(null=True, blank=True)
    errors = models.JSONField(default=list)
    worker_ids = models.JSONField(default=list)
    attempts = models.PositiveIntegerField(default=0)
    enqueued_at = models.DateTimeField()
    run_after = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    last_attempted_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField()
    group_id = models.UUIDField(null=True, blank=True)  # as the Task's

    class Meta:
        verbose_name = _("task result")
        indexes = [
            models.Index(fields=["finished_at"], name="taskq_result_finished"),
            # A group's progress and return values: its finished members, by id
            # (their call order) within each status.
            models.Index(
                fields=["group_id", "status", "id"],
                condition=Q(group_id__isnull=False),
                name="taskq_result_group",
            ),
            # The admin's filters, each with its list order (newest first)
            # behind it, so a filtered page reads one index range.
            models.Index(fields=["status", "finished_at"], name="taskq_result_status"),
            models.Index(fields=["queue_name", "finished_at"], name="taskq_result_queue"),
            models.Index(fields=["task_path", "finished_at"], name="taskq_result_task"),
        ]

    def __str__(self) -> str:
        return f"{self.task_path} ({self.id})"


class TaskDependency(models.Model):
    """``child`` (a BLOCKED task) waits for ``parent`` to finish.

    ``position`` orders the parents' return values in the child's first
    argument. Rows are removed when the child is no longer BLOCKED.
    """

    child = models.UUIDField()
    parent = models.UUIDField(db_index=True)
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        verbose_name = _("task dependency")
        constraints = [
            models.UniqueConstraint(fields=["child", "parent"], name="taskq_dependency_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.child} after {self.parent}"


class TaskGroup(models.Model):
    """Calls of one task enqueued together (``QTask.enqueue_group``).

    Its members carry its id (``group_id``), in the queue and in the
    history, so its progress is two counts over their indexes. ``size`` tells
    a member deleted by an operator from one still to come. A task that waits
    for the group (``after(group)``) has one TaskDependency on the group's id;
    see backends/database/chains.py.
    """

    id = models.UUIDField(primary_key=True, editable=False)
    task_path = models.CharField(max_length=255)
    queue_name = models.CharField(max_length=100)
    size = models.PositiveIntegerField()
    enqueued_at = models.DateTimeField()

    class Meta:
        verbose_name = _("task group")

    def __str__(self) -> str:
        return f"{self.task_path} × {self.size} ({self.id})"


class RateLimitStart(models.Model):
    """One start counted against a rate limit, until ``expires_at``.

    ``key`` is a task's limit group (``Task.limit_key``) or ``@queue:<name>``.
    A group may start a task while fewer than ``rate_limit`` of its starts
    have not expired: a sliding window, so no burst at a window's edge. The
    limited claim writes these and deletes expired ones.
    """

    key = models.CharField(max_length=LIMIT_KEY_MAX_LENGTH)
    rate_limit = models.PositiveIntegerField()  # the group's limit when it started
    # Unix time in seconds: the same arithmetic on every database.
    expires_at = models.FloatField()

    class Meta:
        verbose_name = _("rate-limited start")
        indexes = [
            models.Index(fields=["key", "expires_at"], name="taskq_ratestart_key"),
            models.Index(fields=["expires_at"], name="taskq_ratestart_expiry"),
        ]

    def __str__(self) -> str:
        return self.key


class Schedule(models.Model):
    """The state of a periodic task declared in code (see ``schedules.py``).

    Workers add a row for each declared schedule. The row's ``next_tick_at``
    is advanced with a compare-and-set in the transaction that enqueues the
    tick, so each tick is enqueued once however many workers run.
    """

    name = models.CharField(max_length=200, primary_key=True)
    task_path = models.CharField(max_length=255)
    description = models.CharField(max_length=255)  # the cron expression or interval
    paused = models.BooleanField(default=False)
    next_tick_at = models.DateTimeField(null=True, blank=True)
    last_tick_at = models.DateTimeField(null=True, blank=True)
    last_task_id = models.UUIDField(null=True, blank=True)

    class Meta:
        verbose_name = _("schedule")

    def __str__(self) -> str:
        return self.name


class Worker(models.Model):
    """A running ``runtaskworker`` process, kept fresh by its heartbeat."""

    id = models.CharField(max_length=WORKER_ID_MAX_LENGTH, primary_key=True)
    hostname = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    backend = models.CharField(max_length=100)
    queues = models.JSONField(default=list)  # empty: every queue
    concurrency = models.PositiveIntegerField()
    pool = models.CharField(max_length=20, default="thread")
    started_at = models.DateTimeField()
    last_heartbeat_at = models.DateTimeField()

    class Meta:
        verbose_name = _("worker")

    def __str__(self) -> str:
        return self.id


class Dashboard(Task):
    """No table and no permissions: the admin index's entry for the queue dashboard."""

    class Meta:
        proxy = True
        default_permissions = ()
        verbose_name = _("dashboard")
        verbose_name_plural = _("dashboard")
