"""The queue (``Task``: hot, small) and its history (``TaskResult``: cold, append-only).

A task lives in ``Task`` while it is waiting, scheduled or running, and moves to
``TaskResult`` in the transaction that records how it ended. Keeping finished
rows out of ``Task`` keeps the claim query's table and index small however
much history piles up.
"""

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from .ids import uuid7


class TaskStatus(models.TextChoices):
    READY = "READY", _("Ready")  # waiting; "scheduled" while run_after is ahead
    RUNNING = "RUNNING", _("Running")


class ResultStatus(models.TextChoices):
    SUCCESSFUL = "SUCCESSFUL", _("Successful")
    FAILED = "FAILED", _("Failed")
    CANCELLED = "CANCELLED", _("Cancelled")
    EXPIRED = "EXPIRED", _("Expired")


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
    worker_id = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001
    lease_expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("queued task")
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
        ]

    def __str__(self):
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

    class Meta:
        verbose_name = _("task result")
        indexes = [
            models.Index(fields=["finished_at"], name="taskq_result_finished"),
            # The admin's filters, each with its list order (newest first)
            # behind it, so a filtered page reads one index range.
            models.Index(fields=["status", "finished_at"], name="taskq_result_status"),
            models.Index(fields=["queue_name", "finished_at"], name="taskq_result_queue"),
            models.Index(fields=["task_path", "finished_at"], name="taskq_result_task"),
        ]

    def __str__(self):
        return f"{self.task_path} ({self.id})"


class Worker(models.Model):
    """A running ``runtaskworker`` process, kept fresh by its heartbeat."""

    id = models.CharField(max_length=64, primary_key=True)
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

    def __str__(self):
        return self.id


class Dashboard(Task):
    """No table and no permissions: the admin index's entry for the queue dashboard."""

    class Meta:
        proxy = True
        default_permissions = ()
        verbose_name = _("dashboard")
        verbose_name_plural = _("dashboard")
